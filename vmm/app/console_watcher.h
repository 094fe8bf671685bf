#pragma once
// Reads what the guest prints on its consoles and recognises the Linux
// kernel's failure reports, so a run can end with a verdict instead of a
// hang or a misleading exit code:
//   panic       "Kernel panic - not syncing: ..."   (always watched)
//   oops        "Oops: ...", "general protection fault...", and the "BUG:
//               kernel NULL pointer dereference" / "BUG: unable to handle
//               page fault" lines that open an oops
//   bug         "BUG: ...", "kernel BUG at ..."
//   warn        "WARNING: CPU: N PID: N at ..."
//   kasan       "BUG: KASAN: ..."
//   ubsan       "UBSAN: ..."
//   lockdep     other "WARNING: ..." reports (circular locking, suspicious
//               RCU usage, bad unlock balance...)
//   hung-task   "INFO: task NAME:PID blocked for more than N seconds."
//   softlockup  "watchdog: BUG: soft lockup - CPU#N stuck ...", hard lockups
//   rcu-stall   "rcu: INFO: rcu_... detected stalls ..."
// Lines may carry a printk timestamp ("[    1.234567] "); each console
// (source) has its own line buffer, so interleaved consoles never splice.
// The first report of a kind in `fail_on` is saved from its first line to
// its end marker ("---[ end trace", "---[ end Kernel panic", a closing
// "=====" banner) or kMaxReportLines, whichever comes first.
//
// Bounded: a line longer than kMaxLineBytes is cut (the rest is dropped
// until its newline), kLastLines lines are kept for diagnostics. Not
// thread-safe: the owner serializes feed() (consoles print from vCPU
// threads and the event loop).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace minikvm {

enum class KernelReport : unsigned {
    Panic,
    Oops,
    Bug,
    Warn,
    Kasan,
    Ubsan,
    Lockdep,
    HungTask,
    SoftLockup,
    RcuStall,
    Count,
};

// The dead ends of a Linux boot, for the hints at exit (vmm/app/boot_hints.h):
//   RootMount        "VFS: Cannot open root device ...", "VFS: Unable to mount root fs ..."
//   NoInit           "No working init found", "Requested init X failed", "Failed to execute X"
//   InitramfsUnpack  "Initramfs unpacking failed: ..."
//   InitKilled       "Attempted to kill init! exitcode=0x..."
enum class BootDeadEnd : unsigned {
    RootMount,
    NoInit,
    InitramfsUnpack,
    InitKilled,
    Count,
};

// Which dead end a line (without its timestamp) reports, if any.
std::optional<BootDeadEnd> classify_dead_end(std::string_view text);

// "panic", "oops", "hung-task"...
std::string_view kernel_report_name(KernelReport kind);
// The kinds `--fail-on` accepts, comma-separated ("oops,bug,...").
std::string kernel_report_names();
// Parses "oops,warn" (or "all") into a bit set of KernelReport; nullopt,
// with the bad word in `bad`, when a word is unknown. Panic is not a word:
// it is always watched.
std::optional<uint32_t> parse_fail_on(std::string_view list, std::string& bad);

// A kernel log line's text, without a leading printk timestamp.
std::string_view strip_printk_timestamp(std::string_view line);
// Which report a line starts, if any (the line without its timestamp).
std::optional<KernelReport> classify_report_line(std::string_view text);

class ConsoleWatcher {
public:
    static constexpr size_t kMaxLineBytes = 1024;
    static constexpr size_t kMaxReportLines = 400;
    static constexpr size_t kLastLines = 20;
    static constexpr unsigned kSources = 3;  // 0: the 8250, 1: virtio-console, 2: --exec's stderr console

    struct Report {
        KernelReport kind = KernelReport::Panic;
        std::string headline;            // the line that named it, without its timestamp
        std::vector<std::string> lines;  // first line to end marker (or the cap)
        bool complete = false;           // the end marker was seen
    };

    explicit ConsoleWatcher(uint32_t fail_on = 0) : fail_on_(fail_on) {}

    void feed(unsigned source, std::span<const uint8_t> bytes);

    // The kernel's panic line ("Kernel panic - not syncing: ..."), once seen.
    const std::optional<std::string>& panic_line() const { return panic_line_; }
    // Whether the panic's end marker ("---[ end Kernel panic") followed.
    bool panic_complete() const { return panic_complete_; }
    // The panic's report: its panic line to the end marker (or the cap).
    // A kernel that reboots on panic (panic=-1) prints no end marker.
    const std::optional<Report>& panic_report() const { return panic_report_; }
    // The first report of a `fail_on` kind, saved as it arrives.
    const std::optional<Report>& failure() const { return failure_; }
    // The first line that reported each boot dead end, if any did.
    const std::optional<std::string>& dead_end(BootDeadEnd kind) const {
        return dead_ends_[static_cast<size_t>(kind)];
    }
    // Whether any byte was printed at all.
    bool any_output() const { return bytes_seen_ > 0; }
    uint64_t bytes_seen() const { return bytes_seen_; }
    // The last complete lines (at most kLastLines), oldest first, timestamps kept.
    std::vector<std::string> last_lines() const;

private:
    struct Source {
        std::string line;
        bool overflowed = false;  // dropping the rest of a too-long line
    };
    void on_line(std::string_view line);
    // The line `back` lines before the newest kept one (0: the newest).
    const std::string& recent(size_t back) const {
        return recent_[(recent_next_ + kLastLines - 1 - back) % kLastLines];
    }

    const uint32_t fail_on_;
    Source sources_[kSources];
    std::optional<std::string> panic_line_;
    bool panic_complete_ = false;
    std::optional<Report> panic_report_;
    std::optional<Report> failure_;
    bool recording_ = false;  // failure_ is still collecting lines
    // A ring of the last lines; the strings keep their capacity, so a
    // flood of output allocates nothing per line.
    std::string recent_[kLastLines];
    size_t recent_next_ = 0;
    size_t recent_count_ = 0;
    std::optional<std::string> dead_ends_[static_cast<size_t>(BootDeadEnd::Count)];
    uint64_t bytes_seen_ = 0;
};

}  // namespace minikvm
