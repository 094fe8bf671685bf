#include "devices/pvpanic.h"

#include <algorithm>

namespace minikvm {

void PvPanic::read(uint64_t, std::span<uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (!data.empty()) data[0] = kPanicked | kCrashLoaded;
}

void PvPanic::write(uint64_t, std::span<const uint8_t> data) {
    // Bits the device does not support are ignored, as the spec says.
    if (data.empty()) return;
    const uint8_t events = data[0] & (kPanicked | kCrashLoaded);
    if (events != 0) on_event_(events);
}

}  // namespace minikvm
