#pragma once
// The boot-complete marker: the guest's init writes the byte 123 to I/O port
// 0x3f0 once it is up, and minikvm notes the time (the "boot complete"
// timing of --report, logged at info). Firecracker's boot timer uses the
// same port and value, so guests instrumented for it work unchanged. 0x3f0
// is the floppy controller's base on a PC; minikvm has none.

#include <cstdint>
#include <functional>
#include <span>

#include "vmm/core/bus.h"

namespace minikvm {

class BootCompleteMarker : public BusDevice {
public:
    static constexpr uint16_t kPort = 0x3f0;
    static constexpr uint8_t kValue = 123;

    // `on_marker` runs for every write of kValue; other values are ignored.
    explicit BootCompleteMarker(std::function<void()> on_marker) : on_marker_(std::move(on_marker)) {}

    void read(uint64_t, std::span<uint8_t> data) override;
    void write(uint64_t, std::span<const uint8_t> data) override;

private:
    std::function<void()> on_marker_;
};

}  // namespace minikvm
