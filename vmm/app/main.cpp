// minikvm entry point: parse the command line, build the VM, run it, and turn
// the outcome into the documented exit status (README "Exit codes").

#include <sys/resource.h>
#include <unistd.h>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vmm/app/cli.h"
#include "vmm/app/exec_session.h"
#include "vmm/app/run_report.h"
#include "vmm/core/error.h"
#include "vmm/core/exit_codes.h"
#include "vmm/app/machine.h"

namespace {

void set_up_logging(spdlog::level::level_enum level) {
    auto logger = spdlog::stderr_logger_mt("minikvm");
    // With the terminal in raw mode a bare "\n" would not return the cursor.
    const char* eol = ::isatty(STDIN_FILENO) && ::isatty(STDERR_FILENO) ? "\r\n" : "\n";
    logger->set_formatter(std::make_unique<spdlog::pattern_formatter>("minikvm: [%l] %v", spdlog::pattern_time_type::local, eol));
    logger->set_level(level);
    spdlog::set_default_logger(logger);
}

uint64_t host_memory_bytes() {
    long pages = ::sysconf(_SC_PHYS_PAGES);
    long page_size = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page_size > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) : 0;
}

}  // namespace

int main(int argc, char** argv) {
    const auto process_start = std::chrono::steady_clock::now();
    std::vector<std::string> args(argv + 1, argv + argc);
    minikvm::CliOutcome outcome = minikvm::parse_command_line(args, host_memory_bytes());
    // With --exec every status of minikvm's own is 125, so a script tells
    // it from the command's (vmm/app/exec_session.h).
    const bool exec = outcome.command_line ? outcome.command_line->machine.exec.has_value()
                                           : std::find(args.begin(), args.end(), "--exec") != args.end();
    if (!outcome.command_line) {
        std::fputs(outcome.message.c_str(), outcome.message_is_error ? stderr : stdout);
        return exec && outcome.exit_code != 0 ? minikvm::kExecFailedStatus : outcome.exit_code;
    }
    set_up_logging(outcome.command_line->log_level);

    // Opened before anything else, so an unwritable path fails at once;
    // from here on every exit writes the report.
    std::optional<minikvm::RunReportFile> report_file;
    // A failure before the guest ran: its code and line are the whole report.
    const auto failed = [&](int code, const std::string& line) {
        std::fprintf(stderr, "minikvm: %s\n", line.c_str());
        if (exec) code = minikvm::kExecFailedStatus;
        if (report_file) {
            minikvm::RunReport report;
            report.exit_code = code;
            report.cause = line;
            report.timings.end =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - process_start).count();
            report_file->write(report);
        }
        return code;
    };
    try {
        if (outcome.command_line->report_path) report_file.emplace(*outcome.command_line->report_path);
        minikvm::Machine machine(outcome.command_line->machine, process_start);
        int status = machine.run();
        if (exec && !machine.exec_status()) {
            std::fprintf(stderr, "minikvm: --exec: the command's status never came back: %s (exit status %d)\n",
                         machine.report().cause.c_str(), status);
            status = minikvm::kExecFailedStatus;
        }
        rusage usage{};
        ::getrusage(RUSAGE_SELF, &usage);
        spdlog::info("peak RSS {} KiB", usage.ru_maxrss);  // guest RAM counts only where touched
        if (report_file) report_file->write(machine.report());
        return status;
    } catch (const minikvm::VmmError& error) {
        return failed(minikvm::to_int(error.code()), error.what());
    } catch (const std::exception& error) {
        return failed(minikvm::to_int(minikvm::ExitCode::HostError), std::string("host error: ") + error.what());
    }
}
