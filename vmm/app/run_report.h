#pragma once
// --report FILE: what a CI system needs to know about a run, as JSON, written
// when minikvm exits on any path after the command line was read:
//
//   {"exit_code": 18, "verdict": "panic",
//    "cause": "guest kernel panicked (console): Kernel panic - not syncing: ...",
//    "hints": ["..."],
//    "kernel_report": {"kind": "warn", "complete": true, "lines": ["...", ...]} or null,
//    "panic_report": {"kind": "panic", "complete": false, "lines": [...]} or null,
//    "last_console_lines": ["...", ...],
//    "timings_ms": {"first_kvm_run": 12.5, "first_console_byte": 40.1,
//                   "boot_complete": 812.0, "end": 900.3}}
//
// A timing the run never reached is null. Guest text is made valid UTF-8
// (bad bytes become U+FFFD) and escaped, so any console output gives
// well-formed JSON.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/core/unique_fd.h"

namespace minikvm {

struct RunReport {
    struct KernelReportLines {
        std::string kind;  // kernel_report_name()
        bool complete = false;
        std::vector<std::string> lines;
    };
    struct Timings {  // milliseconds after the process started
        std::optional<double> first_kvm_run;
        std::optional<double> first_console_byte;
        std::optional<double> boot_complete;
        std::optional<double> end;
    };
    int exit_code = 0;
    std::string cause;
    std::vector<std::string> hints;
    std::optional<KernelReportLines> kernel_report;  // the first --fail-on report
    std::optional<KernelReportLines> panic_report;   // the panic's, from its panic line
    std::vector<std::string> last_console_lines;
    Timings timings;
};

// The verdict word for an exit code (README "Exit codes"): "poweroff",
// "guest-exit" (odd: the guest's own code), "usage", "bad-image", "bad-device",
// "kvm-unavailable", "reboot", "crash", "host-error", "stopped", "panic",
// "timeout", "kernel-report"; "unknown" for anything else.
std::string_view verdict_name(int exit_code);

// `text` as a JSON string literal, quotes included.
std::string json_string(std::string_view text);

std::string to_json(const RunReport& report);

// The --report file, opened (and truncated) up front so an unwritable path
// is a usage error (exit 2) before the guest runs.
class RunReportFile {
public:
    // Throws VmmError(Usage) with one line when the file cannot be created.
    explicit RunReportFile(const std::string& path);
    // Writes the report; a failure is logged, never fatal (the exit code stands).
    void write(const RunReport& report);

private:
    std::string path_;
    UniqueFd fd_;
};

}  // namespace minikvm
