// The console watcher alone, for scripts/bench's console section: how fast
// minikvm's ConsoleWatcher (vmm/app/console_watcher.h) reads kernel-log text
// when nothing else is in the way, so its share of the console path's time
// can be set against the end-to-end figures of bench-serial-out and
// bench-console-out. minikvm cannot run without its watcher (panics are
// always watched); this is the "without" half of the comparison.
//
//   console_watcher_throughput --text FILE [--bytes N]
//
// The watcher watches for every report kind (--fail-on all, the costliest
// case) and is fed the way Machine::console_output feeds it, under a
// std::mutex taken per call, with the panic check around feed():
//
//   feed=1     one byte per call, as the 8250 delivers its output (source 0)
//   feed=4096  4 KiB per call, as virtio-console delivers a transmit buffer
//              (source 1)
//
// The text is FILE (scripts/bench passes what the guest's bench-console-out
// delivered) repeated or cut to N bytes (default 4 MiB). Each mode feeds the text whole, at least
// 3 times and for at least 0.3 s after one warm-up pass, and prints the
// median pass:
//
//   console_watcher_throughput: feed=1 bytes=N passes=P ns_per_byte=X bytes_per_s=R
//
// Fails (exit 1) when the text made the watcher see a report: the figures
// are for a console that prints no failure.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/app/console_watcher.h"

namespace {

using namespace minikvm;
using Clock = std::chrono::steady_clock;

constexpr size_t kDefaultBytes = size_t{4} << 20;
constexpr size_t kChunk = 4096;
constexpr int kMinPasses = 3;
constexpr double kMinSeconds = 0.3;

std::string file_text(const std::string& path, size_t bytes) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    const std::string content{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (content.empty()) throw std::runtime_error(path + " is empty");
    std::string text;
    text.reserve(bytes);
    while (text.size() < bytes) text.append(content, 0, std::min(content.size(), bytes - text.size()));
    return text;
}

// What Machine::console_output does around the watcher (the stdout write
// and the --console-log copy aside).
class WatchedConsole {
public:
    WatchedConsole(uint32_t fail_on) : watcher_(fail_on) {}

    void output(unsigned source, std::span<const uint8_t> bytes) {
        std::lock_guard lock(mutex_);
        const bool had_panic = watcher_.panic_line().has_value();
        watcher_.feed(source, bytes);
        if (!had_panic && watcher_.panic_line() && !panic_since_) panic_since_ = Clock::now();
    }

    const ConsoleWatcher& watcher() const { return watcher_; }

private:
    std::mutex mutex_;
    ConsoleWatcher watcher_;
    std::optional<Clock::time_point> panic_since_;
};

// One pass over the text in `chunk`-byte calls; seconds.
double pass(WatchedConsole& console, std::span<const uint8_t> text, size_t chunk) {
    const unsigned source = chunk == 1 ? 0 : 1;
    const auto start = Clock::now();
    if (chunk == 1) {
        for (size_t i = 0; i < text.size(); ++i) console.output(source, text.subspan(i, 1));
    } else {
        for (size_t at = 0; at < text.size(); at += chunk)
            console.output(source, text.subspan(at, std::min(chunk, text.size() - at)));
    }
    return std::chrono::duration<double>(Clock::now() - start).count();
}

bool measure(uint32_t fail_on, std::span<const uint8_t> text, size_t chunk) {
    WatchedConsole console(fail_on);
    pass(console, text, chunk);  // warm-up: allocations, caches
    std::vector<double> seconds;
    double total = 0;
    while (seconds.size() < kMinPasses || total < kMinSeconds) {
        seconds.push_back(pass(console, text, chunk));
        total += seconds.back();
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    const ConsoleWatcher& watcher = console.watcher();
    if (watcher.panic_line() || watcher.failure()) {
        std::fprintf(stderr, "console_watcher_throughput: the text holds a kernel report: %s\n",
                     watcher.panic_line() ? watcher.panic_line()->c_str()
                                          : watcher.failure()->lines.front().c_str());
        return false;
    }
    std::printf("console_watcher_throughput: feed=%zu bytes=%zu passes=%zu ns_per_byte=%.3f bytes_per_s=%.0f\n", chunk,
                text.size(), seconds.size(), median * 1e9 / static_cast<double>(text.size()),
                static_cast<double>(text.size()) / median);
    return true;
}

int usage() {
    std::fprintf(stderr, "usage: console_watcher_throughput --text FILE [--bytes N]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    size_t bytes = kDefaultBytes;
    std::optional<std::string> path;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (i + 1 == argc) return usage();
        if (arg == "--bytes") {
            char* end = nullptr;
            bytes = std::strtoull(argv[++i], &end, 10);
            if (*end != '\0' || bytes == 0) return usage();
        } else if (arg == "--text") {
            path = argv[++i];
        } else {
            return usage();
        }
    }
    if (!path) return usage();
    try {
        std::string bad;
        const uint32_t fail_on = parse_fail_on("all", bad).value();
        const std::string text = file_text(*path, bytes);
        const std::span<const uint8_t> span(reinterpret_cast<const uint8_t*>(text.data()), text.size());
        for (size_t chunk : {size_t{1}, kChunk})
            if (!measure(fail_on, span, chunk)) return 1;
        return 0;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "console_watcher_throughput: %s\n", error.what());
        return 1;
    }
}
