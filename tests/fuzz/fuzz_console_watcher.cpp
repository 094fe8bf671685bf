// libFuzzer target: the console watcher (vmm/app/console_watcher.h) reading
// whatever a guest prints. The input is the --fail-on set (2 bytes), then
// chunks, each a header byte (bit 0: the console; the rest: the chunk's
// length, 0..127) and its bytes, so reports arrive split and interleaved.
// Any crash or sanitizer report fails the run, as does a broken bound.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "vmm/app/console_watcher.h"

using namespace minikvm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    ConsoleWatcher watcher(static_cast<uint32_t>(data[0] | data[1] << 8));
    size_t at = 2;
    while (at < size) {
        const uint8_t header = data[at++];
        const size_t length = std::min<size_t>(header >> 1, size - at);
        watcher.feed(header & 1, std::span(data + at, length));
        at += length;
    }
    if (watcher.last_lines().size() > ConsoleWatcher::kLastLines) std::abort();
    for (const auto& line : watcher.last_lines())
        if (line.size() > ConsoleWatcher::kMaxLineBytes) std::abort();
    if (const auto& report = watcher.failure()) {
        if (report->lines.empty() || report->lines.size() > ConsoleWatcher::kMaxReportLines) std::abort();
        if (report->kind == KernelReport::Panic) std::abort();  // panic is never a --fail-on kind
    }
    if (watcher.panic_complete() && !watcher.panic_line()) std::abort();
    return 0;
}
