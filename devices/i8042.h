#pragma once
// Just enough of the PS/2 keyboard controller (ports 0x60 and 0x64) for a
// guest to reset the machine: command 0xFE pulses the CPU reset line, which
// is how Linux's `reboot` ends up (reboot=kbd, the default without ACPI).
// Other commands get the replies Linux expects from a controller with no
// keyboard or mouse attached, so probing it costs no timeouts.

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>

#include "vmm/core/bus.h"

namespace minikvm {

class I8042 : public BusDevice {
public:
    // One range 0x60-0x64: offset 0 is data, 4 is status/command. Port 0x61
    // in between is KVM's in-kernel PIT speaker port and never reaches us.
    static constexpr uint16_t kBasePort = 0x60;
    static constexpr uint64_t kPortCount = 5;

    explicit I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

private:
    void command(uint8_t value);

    std::function<void()> on_reset_;
    std::mutex mutex_;
    std::optional<uint8_t> output_;       // byte waiting in the output buffer
    std::optional<uint8_t> pending_write_;  // command that takes a data byte
    uint8_t command_byte_ = 0x30;         // both ports disabled, no interrupts
};

}  // namespace minikvm
