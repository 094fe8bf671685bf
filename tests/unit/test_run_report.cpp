// --report's JSON: every field, verdict names for every exit code, and guest
// text (quotes, control bytes, bad UTF-8) that still gives valid JSON.

#include <catch2/catch.hpp>

#include <string>

#include "vmm/app/run_report.h"
#include "vmm/core/error.h"
#include "vmm/core/exit_codes.h"

using namespace minikvm;
using Catch::Matchers::Contains;

TEST_CASE("run report: verdict names", "[run-report]") {
    CHECK(verdict_name(0) == "poweroff");
    CHECK(verdict_name(85) == "guest-exit");
    CHECK(verdict_name(1) == "guest-exit");
    CHECK(verdict_name(to_int(ExitCode::Usage)) == "usage");
    CHECK(verdict_name(to_int(ExitCode::GuestReboot)) == "reboot");
    CHECK(verdict_name(to_int(ExitCode::GuestPanic)) == "panic");
    CHECK(verdict_name(to_int(ExitCode::Timeout)) == "timeout");
    CHECK(verdict_name(to_int(ExitCode::KernelReport)) == "kernel-report");
    CHECK(verdict_name(to_int(ExitCode::Stopped)) == "stopped");
    CHECK(verdict_name(24) == "unknown");
}

TEST_CASE("run report: JSON strings are escaped and valid UTF-8", "[run-report]") {
    CHECK(json_string("plain") == "\"plain\"");
    CHECK(json_string("a \"q\" \\ b") == "\"a \\\"q\\\" \\\\ b\"");
    CHECK(json_string("tab\tnl\ncr\r") == "\"tab\\tnl\\ncr\\r\"");
    CHECK(json_string(std::string("\x01\x1b[0m\x7f", 6)) == "\"\\u0001\\u001b[0m\\u007f\"");
    CHECK(json_string("caf\xc3\xa9 \xe2\x82\xac") == "\"caf\xc3\xa9 \xe2\x82\xac\"");
    // A lone continuation byte, a cut sequence, an overlong '/', a surrogate.
    CHECK(json_string("\x80") == "\"\xef\xbf\xbd\"");
    CHECK(json_string("\xe2\x82") == "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    CHECK(json_string("\xc0\xaf") == "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    CHECK(json_string("\xed\xa0\x80") == "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    CHECK(json_string(std::string("nul\0byte", 8)) == "\"nul\\u0000byte\"");
}

TEST_CASE("run report: every field", "[run-report]") {
    RunReport report;
    report.exit_code = to_int(ExitCode::KernelReport);
    report.cause = "guest kernel reported warn (--fail-on): WARNING: CPU: 0 PID: 1 at x";
    report.hints = {"one", "two"};
    report.kernel_report = RunReport::KernelReportLines{"warn", true, {"WARNING: CPU: 0", "---[ end trace 0 ]---"}};
    report.panic_report = RunReport::KernelReportLines{"panic", false, {"Kernel panic - not syncing: x"}};
    report.last_console_lines = {"last"};
    report.timings.first_kvm_run = 12.34;
    report.timings.end = 900;
    const std::string json = to_json(report);
    CHECK_THAT(json, Contains("\"exit_code\": 22,"));
    CHECK_THAT(json, Contains("\"verdict\": \"kernel-report\","));
    CHECK_THAT(json, Contains("\"cause\": \"guest kernel reported warn (--fail-on): WARNING: CPU: 0 PID: 1 at x\","));
    CHECK_THAT(json, Contains("\"hints\": [\"one\", \"two\"],"));
    CHECK_THAT(json, Contains("\"kernel_report\": {\"kind\": \"warn\", \"complete\": true, \"lines\": "
                              "[\"WARNING: CPU: 0\", \"---[ end trace 0 ]---\"]},"));
    CHECK_THAT(json, Contains("\"panic_report\": {\"kind\": \"panic\", \"complete\": false, \"lines\": "
                              "[\"Kernel panic - not syncing: x\"]},"));
    CHECK_THAT(json, Contains("\"last_console_lines\": [\"last\"],"));
    CHECK_THAT(json, Contains("\"timings_ms\": {\"first_kvm_run\": 12.3, \"first_console_byte\": null, "
                              "\"boot_complete\": null, \"end\": 900.0}"));

    RunReport empty;
    const std::string minimal = to_json(empty);
    CHECK_THAT(minimal, Contains("\"kernel_report\": null,"));
    CHECK_THAT(minimal, Contains("\"panic_report\": null,"));
    CHECK_THAT(minimal, Contains("\"hints\": [],"));
}

TEST_CASE("run report: an unwritable path is a usage error", "[run-report]") {
    try {
        RunReportFile file("/nonexistent-dir/report.json");
        FAIL("no error");
    } catch (const VmmError& error) {
        CHECK(error.code() == ExitCode::Usage);
        CHECK_THAT(std::string(error.what()), Contains("--report /nonexistent-dir/report.json: No such file or directory"));
    }
}
