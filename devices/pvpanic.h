#pragma once
// pvpanic, the ISA variant (QEMU's `-device pvpanic`, docs/specs/pvpanic.txt):
// one I/O port, 0x505. A read gives the events the device supports (bit 0
// PANICKED, bit 1 CRASH_LOADED); the guest writes an event when its kernel
// panics (PANICKED) or is about to boot a crash kernel (CRASH_LOADED).
// Linux's `pvpanic-mmio` driver finds it through the ACPI device QEMU0001
// (boot/acpi_tables.cpp describes it in the DSDT) and writes from its panic
// notifier, so minikvm learns of a panic even when the console is silent.
//
// Chosen over the PCI variant (1b36:0011): it takes no PCI slot from the
// eight that have interrupt lines, and needs no BAR.

#include <cstdint>
#include <functional>
#include <span>

#include "vmm/core/bus.h"

namespace minikvm {

class PvPanic : public BusDevice {
public:
    static constexpr uint16_t kPort = 0x505;
    static constexpr uint8_t kPanicked = 1u << 0;
    static constexpr uint8_t kCrashLoaded = 1u << 1;

    // `on_event` gets the event bits of each write that has any we support.
    explicit PvPanic(std::function<void(uint8_t events)> on_event) : on_event_(std::move(on_event)) {}

    void read(uint64_t, std::span<uint8_t> data) override;
    void write(uint64_t, std::span<const uint8_t> data) override;

private:
    std::function<void(uint8_t)> on_event_;
};

}  // namespace minikvm
