#include "vmm/app/run_report.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "vmm/core/error.h"
#include "vmm/core/exit_codes.h"

namespace minikvm {

namespace {

// The length of the valid UTF-8 sequence at the start of `text`, or 0.
size_t utf8_sequence_length(std::string_view text) {
    const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
    const uint8_t lead = byte(0);
    size_t length = 0;
    uint32_t min = 0;
    uint32_t code = 0;
    if (lead < 0x80) return 1;
    if ((lead & 0xe0) == 0xc0) length = 2, min = 0x80, code = lead & 0x1f;
    else if ((lead & 0xf0) == 0xe0) length = 3, min = 0x800, code = lead & 0x0f;
    else if ((lead & 0xf8) == 0xf0) length = 4, min = 0x10000, code = lead & 0x07;
    else return 0;
    if (text.size() < length) return 0;
    for (size_t i = 1; i < length; ++i) {
        if ((byte(i) & 0xc0) != 0x80) return 0;
        code = (code << 6) | (byte(i) & 0x3f);
    }
    // Overlong forms, surrogates and code points past Unicode are not UTF-8.
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
    return length;
}

std::string json_string_list(const std::vector<std::string>& items) {
    std::string out = "[";
    for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + json_string(items[i]);
    return out + "]";
}

std::string json_report_lines(const std::optional<RunReport::KernelReportLines>& lines) {
    if (!lines) return "null";
    return fmt::format("{{\"kind\": {}, \"complete\": {}, \"lines\": {}}}", json_string(lines->kind),
                       lines->complete ? "true" : "false", json_string_list(lines->lines));
}

std::string json_number(const std::optional<double>& value) {
    return value ? fmt::format("{:.1f}", *value) : "null";
}

}  // namespace

std::string_view verdict_name(int exit_code) {
    if (exit_code > 0 && (exit_code & 1) != 0) return "guest-exit";
    switch (static_cast<ExitCode>(exit_code)) {
        case ExitCode::GuestPowerOff: return "poweroff";
        case ExitCode::Usage: return "usage";
        case ExitCode::BadImage: return "bad-image";
        case ExitCode::BadDevice: return "bad-device";
        case ExitCode::KvmUnavailable: return "kvm-unavailable";
        case ExitCode::GuestReboot: return "reboot";
        case ExitCode::GuestCrash: return "crash";
        case ExitCode::HostError: return "host-error";
        case ExitCode::Stopped: return "stopped";
        case ExitCode::GuestPanic: return "panic";
        case ExitCode::Timeout: return "timeout";
        case ExitCode::KernelReport: return "kernel-report";
    }
    return "unknown";
}

std::string json_string(std::string_view text) {
    std::string out = "\"";
    out.reserve(text.size() + 2);
    while (!text.empty()) {
        const uint8_t c = static_cast<uint8_t>(text.front());
        const size_t length = utf8_sequence_length(text);
        if (length == 0) {
            out += "\xef\xbf\xbd";  // U+FFFD for a byte that is not UTF-8
            text.remove_prefix(1);
            continue;
        }
        if (length > 1) {
            out.append(text.substr(0, length));
        } else if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            out += fmt::format("\\u{:04x}", c);
        } else {
            out += static_cast<char>(c);
        }
        text.remove_prefix(length);
    }
    return out + "\"";
}

std::string to_json(const RunReport& report) {
    std::string out = "{\n";
    out += fmt::format("  \"exit_code\": {},\n", report.exit_code);
    out += fmt::format("  \"verdict\": {},\n", json_string(verdict_name(report.exit_code)));
    out += fmt::format("  \"cause\": {},\n", json_string(report.cause));
    out += fmt::format("  \"hints\": {},\n", json_string_list(report.hints));
    out += fmt::format("  \"kernel_report\": {},\n", json_report_lines(report.kernel_report));
    out += fmt::format("  \"panic_report\": {},\n", json_report_lines(report.panic_report));
    out += fmt::format("  \"last_console_lines\": {},\n", json_string_list(report.last_console_lines));
    const RunReport::Timings& t = report.timings;
    out += fmt::format(
        "  \"timings_ms\": {{\"first_kvm_run\": {}, \"first_console_byte\": {}, \"boot_complete\": {}, \"end\": {}}}\n",
        json_number(t.first_kvm_run), json_number(t.first_console_byte), json_number(t.boot_complete),
        json_number(t.end));
    return out + "}\n";
}

RunReportFile::RunReportFile(const std::string& path)
    : path_(path), fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {
    if (!fd_) fail(ExitCode::Usage, "--report {}: {}", path, std::strerror(errno));
}

void RunReportFile::write(const RunReport& report) {
    const std::string json = to_json(report);
    size_t done = 0;
    while (done < json.size()) {
        const ssize_t n = ::write(fd_.get(), json.data() + done, json.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            spdlog::error("--report {}: {}", path_, n < 0 ? std::strerror(errno) : "nothing written");
            return;
        }
        done += static_cast<size_t>(n);
    }
}

}  // namespace minikvm
