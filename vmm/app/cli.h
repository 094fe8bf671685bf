#pragma once
// The command line: CLI11 definitions, value parsing and the one-line error
// for every bad value. Pure: no KVM, no files opened.

#include <spdlog/common.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/app/machine_config.h"
#include "vmm/backends/block/disk_config.h"
#include "vmm/backends/net/net_config.h"
#include "vmm/backends/p9/share_config.h"

namespace minikvm {

struct CommandLine {
    MachineConfig machine;
    spdlog::level::level_enum log_level = spdlog::level::warn;
    std::optional<std::string> report_path;  // --report: JSON at exit (vmm/app/run_report.h)
};

struct CliOutcome {
    std::optional<CommandLine> command_line;  // set when the VM should run
    int exit_code = 0;                        // otherwise: exit with this
    std::string message;                      // ...after printing this
    bool message_is_error = false;            // to stderr (else stdout)
};

constexpr uint64_t kMinimumMemory = 16ULL << 20;

// `args` excludes the program name. `host_memory` bounds --memory.
CliOutcome parse_command_line(const std::vector<std::string>& args, uint64_t host_memory);

// "256M", "1G", "512k", "2GiB", or a plain number of MiB. nullopt when
// malformed, zero, or too large to represent.
std::optional<uint64_t> parse_memory_size(const std::string& text);

// "90s", "5m", "1h", "500ms", or a plain number of seconds. nullopt when
// malformed or longer than 10^6 seconds (11 days).
std::optional<std::chrono::milliseconds> parse_duration(const std::string& text);
// --poll: "0", or a number with ns, us or ms, up to 10 ms.
std::optional<std::chrono::nanoseconds> parse_poll_window(const std::string& text);

// The value of one --disk option: comma-separated items
//   path=FILE (required), ro, cache=none|writeback, aio=io_uring|threads,
//   serial=ID (at most 20 printable ASCII characters)
// where ",," stands for a comma inside a value (as in QEMU). Syntax only:
// nothing is opened. On error returns nullopt and sets `error` to the
// reason, without the "--disk VALUE:" prefix.
std::optional<DiskConfig> parse_disk_option(const std::string& text, std::string& error);

// The value of one --net option: comma-separated items
//   tap=NAME (required: a host interface name, 1 to 15 characters),
//   mac=MAC (six hex bytes, "52:54:00:12:34:56"; unicast, not all zero).
// Same escaping and errors as parse_disk_option.
std::optional<NetConfig> parse_net_option(const std::string& text, std::string& error);

// The value of one --share option: PATH first, then comma-separated items
//   tag=TAG (1 to 255 printable characters, no spaces or commas; default:
//   the directory's last component, "root" for /), ro, rw (the default),
//   dev (open device nodes, FIFOs and sockets; make FIFOs and sockets).
// Same escaping and errors as parse_disk_option; nothing is opened.
std::optional<ShareConfig> parse_share_option(const std::string& text, std::string& error);

}  // namespace minikvm
