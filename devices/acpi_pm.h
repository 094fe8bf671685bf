#pragma once
// ACPI PM1a event and control registers (I/O ports 0x600-0x605), the fixed
// hardware a non-reduced ACPI platform must have. Their one job here: when
// the guest writes SLP_EN with the _S5 sleep type from our DSDT, the VM
// powers off -- the ACPI way `poweroff` ends on kernels built with ACPI.

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>

#include "vmm/core/bus.h"

namespace minikvm {

class AcpiPm : public BusDevice {
public:
    static constexpr uint16_t kEventBlock = 0x600;    // PM1a_STS (2) + PM1a_EN (2)
    static constexpr uint16_t kControlBlock = 0x604;  // PM1a_CNT (2)
    static constexpr uint16_t kBasePort = kEventBlock;
    static constexpr uint64_t kPortCount = 6;
    static constexpr uint8_t kEventBlockLength = 4;
    static constexpr uint8_t kControlBlockLength = 2;
    static constexpr uint8_t kS5SleepType = 5;  // must match _S5 in the DSDT

    explicit AcpiPm(std::function<void()> on_power_off) : on_power_off_(std::move(on_power_off)) {}

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

private:
    std::function<void()> on_power_off_;
    std::mutex mutex_;
    uint8_t registers_[kPortCount] = {};
};

}  // namespace minikvm
