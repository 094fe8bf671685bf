#include "devices/debug_exit.h"

#include <algorithm>

namespace minikvm {

void DebugExit::read(uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0xff); }

void DebugExit::write(uint64_t, std::span<const uint8_t> data) {
    // Any width is accepted; the low byte is the value, as in QEMU.
    if (!data.empty()) on_exit_(data[0]);
}

}  // namespace minikvm
