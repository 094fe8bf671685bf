#include "devices/exec_status.h"

#include <algorithm>

namespace minikvm {

void ExecStatus::read(uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0xff); }

void ExecStatus::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    if (offset == kTerminalReady) {
        if (on_terminal_ready_) on_terminal_ready_();
        return;
    }
    // x86 is little-endian: the first byte of a wider write is the low one.
    on_status_(data[0]);
}

}  // namespace minikvm
