#include "vmm/app/console_watcher.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace minikvm {

namespace {

constexpr std::array<std::string_view, static_cast<size_t>(KernelReport::Count)> kNames{
    "panic", "oops", "bug", "warn", "kasan", "ubsan", "lockdep", "hung-task", "softlockup", "rcu-stall"};

bool starts_with(std::string_view text, std::string_view prefix) { return text.substr(0, prefix.size()) == prefix; }
bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

std::string_view trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.remove_suffix(1);
    return text;
}

// "=====...": the banner KASAN and UBSAN reports open and close with.
bool is_banner(std::string_view text) {
    text = trim(text);
    return text.size() >= 20 && std::all_of(text.begin(), text.end(), [](char c) { return c == '='; });
}

// Whether `text` ends a report of `kind` that is being saved.
bool ends_report(KernelReport kind, std::string_view text) {
    switch (kind) {
        case KernelReport::Oops:
        case KernelReport::Bug:
        case KernelReport::Warn: return starts_with(text, "---[ end trace");
        case KernelReport::Kasan:
        case KernelReport::Ubsan: return is_banner(text);
        case KernelReport::Panic: return starts_with(text, "---[ end Kernel panic");
        default:
            // Lockdep, hung tasks, lockups and stalls have no marker of
            // their own; they end with the stack of the task concerned.
            return trim(text) == "</TASK>";
    }
}

}  // namespace

std::string_view kernel_report_name(KernelReport kind) { return kNames[static_cast<size_t>(kind)]; }

std::string kernel_report_names() {
    std::string out;
    for (size_t i = 1; i < kNames.size(); ++i) out += (i > 1 ? "," : "") + std::string(kNames[i]);
    return out;
}

std::optional<uint32_t> parse_fail_on(std::string_view list, std::string& bad) {
    uint32_t mask = 0;
    if (list == "all") {
        for (size_t i = 1; i < kNames.size(); ++i) mask |= 1u << i;
        return mask;
    }
    while (true) {
        const size_t comma = list.find(',');
        const std::string_view word = list.substr(0, comma);
        const auto* found = std::find(kNames.begin() + 1, kNames.end(), word);
        if (found == kNames.end()) {
            bad = std::string(word);
            return std::nullopt;
        }
        mask |= 1u << (found - kNames.begin());
        if (comma == std::string_view::npos) return mask;
        list.remove_prefix(comma + 1);
    }
}

std::string_view strip_printk_timestamp(std::string_view line) {
    // "[    1.234567] " (and "[T1] "-style caller IDs are not printed by default).
    if (line.empty() || line.front() != '[') return line;
    const size_t close = line.find(']');
    if (close == std::string_view::npos || close > 20) return line;
    for (char c : line.substr(1, close - 1))
        if (c != ' ' && c != '.' && (c < '0' || c > '9')) return line;
    line.remove_prefix(close + 1);
    if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    return line;
}

std::optional<KernelReport> classify_report_line(std::string_view text) {
    // Most lines are none of these: one look at the first character says so.
    if (text.empty() || std::string_view("KBUwIrWOgk").find(text.front()) == std::string_view::npos)
        return std::nullopt;
    if (starts_with(text, "Kernel panic - not syncing")) return KernelReport::Panic;
    if (starts_with(text, "BUG: KASAN:")) return KernelReport::Kasan;
    if (starts_with(text, "UBSAN:")) return KernelReport::Ubsan;
    if (starts_with(text, "watchdog: BUG: soft lockup") || starts_with(text, "watchdog: Watchdog detected hard LOCKUP"))
        return KernelReport::SoftLockup;
    if (starts_with(text, "INFO: task ") && contains(text, " blocked for more than ")) return KernelReport::HungTask;
    if ((starts_with(text, "rcu: INFO: ") || starts_with(text, "INFO: rcu_")) && contains(text, "detected stall"))
        return KernelReport::RcuStall;
    if (starts_with(text, "WARNING: CPU: ")) return KernelReport::Warn;
    if (starts_with(text, "WARNING: ")) return KernelReport::Lockdep;
    // A bad kernel memory access opens its oops with a "BUG:" line.
    if (starts_with(text, "BUG: kernel NULL pointer dereference") || starts_with(text, "BUG: unable to handle"))
        return KernelReport::Oops;
    if (starts_with(text, "BUG: ") || starts_with(text, "kernel BUG at ")) return KernelReport::Bug;
    if (starts_with(text, "Oops: ") || starts_with(text, "general protection fault")) return KernelReport::Oops;
    return std::nullopt;
}

std::optional<BootDeadEnd> classify_dead_end(std::string_view text) {
    // Prefixes only (every console line passes here): the panics name the
    // dead end after "Kernel panic - not syncing: ".
    constexpr std::string_view kPanic = "Kernel panic - not syncing: ";
    if (text.empty() || std::string_view("KVFI").find(text.front()) == std::string_view::npos) return std::nullopt;
    if (starts_with(text, kPanic)) {
        text.remove_prefix(kPanic.size());
        if (starts_with(text, "VFS: Unable to mount root fs")) return BootDeadEnd::RootMount;
        if (starts_with(text, "No working init found") || starts_with(text, "Requested init "))
            return BootDeadEnd::NoInit;
        if (starts_with(text, "Attempted to kill init!")) return BootDeadEnd::InitKilled;
        return std::nullopt;
    }
    if (starts_with(text, "VFS: Cannot open root device") || starts_with(text, "VFS: Unable to mount root fs"))
        return BootDeadEnd::RootMount;
    if (starts_with(text, "Failed to execute ")) return BootDeadEnd::NoInit;
    if (starts_with(text, "Initramfs unpacking failed")) return BootDeadEnd::InitramfsUnpack;
    return std::nullopt;
}

void ConsoleWatcher::feed(unsigned source, std::span<const uint8_t> bytes) {
    bytes_seen_ += bytes.size();
    Source& in = sources_[std::min(source, kSources - 1)];
    const char* at = reinterpret_cast<const char*>(bytes.data());
    const char* const end = at + bytes.size();
    while (at < end) {
        // Whole runs up to the next newline: the console path pays per line, not per byte.
        const char* newline = static_cast<const char*>(std::memchr(at, '\n', static_cast<size_t>(end - at)));
        const char* run_end = newline ? newline : end;
        if (newline && in.line.empty() && !in.overflowed) {
            // A whole line inside this chunk (the usual case): no copy.
            std::string_view line(at, std::min(static_cast<size_t>(run_end - at), kMaxLineBytes));
            while (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            on_line(line);
            at = newline + 1;
            continue;
        }
        if (!in.overflowed) {
            const size_t room = kMaxLineBytes - in.line.size();
            const size_t length = static_cast<size_t>(run_end - at);
            in.line.append(at, std::min(length, room));
            // Keep what fits; drop the rest of this line.
            if (length > room) in.overflowed = true;
        }
        if (!newline) break;
        // Serial consoles end lines with "\r\n"; a pty on the way adds another '\r'.
        while (!in.line.empty() && in.line.back() == '\r') in.line.pop_back();
        on_line(in.line);
        in.line.clear();
        in.overflowed = false;
        at = newline + 1;
    }
}

std::vector<std::string> ConsoleWatcher::last_lines() const {
    std::vector<std::string> lines;
    for (size_t back = recent_count_; back > 0; --back) lines.push_back(recent(back - 1));
    return lines;
}

void ConsoleWatcher::on_line(std::string_view line) {
    recent_[recent_next_].assign(line);
    recent_next_ = (recent_next_ + 1) % kLastLines;
    recent_count_ = std::min(recent_count_ + 1, kLastLines);
    const std::string_view text = strip_printk_timestamp(line);
    const std::optional<KernelReport> kind = classify_report_line(text);
    if (const auto dead_end = classify_dead_end(text)) {
        auto& first = dead_ends_[static_cast<size_t>(*dead_end)];
        if (!first) first = std::string(text);
    }

    if (kind == KernelReport::Panic && !panic_line_) {
        panic_line_ = std::string(text);
        panic_report_ = Report{.kind = KernelReport::Panic, .headline = std::string(text), .lines = {}, .complete = false};
    }
    if (panic_report_ && !panic_complete_ && panic_report_->lines.size() < kMaxReportLines)
        panic_report_->lines.emplace_back(line);
    if (panic_line_ && !panic_complete_ && ends_report(KernelReport::Panic, text)) {
        panic_complete_ = true;
        panic_report_->complete = true;
    }

    if (recording_) {
        failure_->lines.emplace_back(line);
        if (ends_report(failure_->kind, text)) {
            failure_->complete = true;
            recording_ = false;
        } else if (failure_->lines.size() >= kMaxReportLines) {
            recording_ = false;
        }
        return;
    }
    if (failure_ || !kind || *kind == KernelReport::Panic) return;
    if ((fail_on_ & (1u << static_cast<unsigned>(*kind))) == 0) return;
    failure_ = Report{.kind = *kind, .headline = std::string(text), .lines = {}, .complete = false};
    // Reports whose opening line comes after their start: an oops after
    // "BUG: kernel NULL pointer dereference", a WARN()'s or BUG()'s message
    // after "------------[ cut here ]------------". Start there.
    const auto opener = [&](std::string_view earlier) {
        if (*kind == KernelReport::Oops) return starts_with(earlier, "BUG: ");
        if (*kind == KernelReport::Warn || *kind == KernelReport::Bug) return contains(earlier, "[ cut here ]");
        return false;
    };
    if (recent_count_ >= 2) {
        for (size_t back = std::min<size_t>(recent_count_ - 1, 4); back > 0; --back) {
            if (opener(strip_printk_timestamp(recent(back)))) {
                for (size_t i = back; i > 0; --i) failure_->lines.push_back(recent(i));
                break;
            }
        }
    }
    failure_->lines.emplace_back(line);
    recording_ = true;
}

}  // namespace minikvm
