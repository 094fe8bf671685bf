// libFuzzer target: the console watcher (vmm/app/console_watcher.h) reading
// whatever a guest prints. The input is the --fail-on set (2 bytes), then
// chunks, each a header byte (bit 0: the console; the rest: the chunk's
// length, 0..127) and its bytes, so reports arrive split and interleaved.
// Any crash or sanitizer report fails the run, as does a broken bound. The
// saved lines then go through --report's JSON writer (vmm/app/run_report.h),
// which must turn any bytes into valid UTF-8 without control characters.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "vmm/app/boot_hints.h"
#include "vmm/app/console_watcher.h"
#include "vmm/app/run_report.h"

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
    if (const auto& panic = watcher.panic_report())
        if (panic->lines.empty() || panic->lines.size() > ConsoleWatcher::kMaxReportLines) std::abort();

    BootFacts facts;
    facts.exit_status = 18;
    facts.any_output = watcher.any_output();
    for (size_t i = 0; i < static_cast<size_t>(BootDeadEnd::Count); ++i)
        facts.dead_ends[i] = watcher.dead_end(static_cast<BootDeadEnd>(i));
    RunReport report;
    report.hints = boot_failure_hints(facts);
    report.last_console_lines = watcher.last_lines();
    if (const auto& failure = watcher.failure()) report.kernel_report = RunReport::KernelReportLines{"x", false, failure->lines};
    const std::string json = to_json(report);
    for (size_t i = 0; i < json.size(); ++i) {
        const auto c = static_cast<uint8_t>(json[i]);
        if (c < 0x20 && c != '\n') std::abort();  // raw control bytes are not JSON
        if (c >= 0x80) {
            // Every non-ASCII byte must belong to a well-formed UTF-8 sequence.
            const size_t length = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
            if (length == 0 || i + length > json.size()) std::abort();
            for (size_t k = 1; k < length; ++k)
                if ((static_cast<uint8_t>(json[i + k]) & 0xc0) != 0x80) std::abort();
            i += length - 1;
        }
    }
    return 0;
}
