#include "devices/boot_complete_marker.h"

#include <algorithm>

namespace minikvm {

// Nothing to read: an absent ISA port floats high.
void BootCompleteMarker::read(uint64_t, std::span<uint8_t> data) { std::fill(data.begin(), data.end(), 0xff); }

void BootCompleteMarker::write(uint64_t, std::span<const uint8_t> data) {
    // The low byte decides, whatever the access width (Firecracker checks the byte too).
    if (!data.empty() && data[0] == kValue) on_marker_();
}

}  // namespace minikvm
