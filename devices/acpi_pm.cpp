#include "devices/acpi_pm.h"

namespace minikvm {

namespace {
constexpr uint64_t kStatusOffset = 0;   // write-1-to-clear
constexpr uint64_t kControlOffset = 4;
constexpr uint16_t kSciEnable = 1U << 0;  // reads as set: the platform is always in ACPI mode
constexpr uint16_t kSleepEnable = 1U << 13;
constexpr unsigned kSleepTypeShift = 10;
constexpr uint16_t kSleepTypeMask = 0x7;
}  // namespace

void AcpiPm::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < data.size(); ++i) {
        uint64_t at = offset + i;
        data[i] = at < kPortCount ? registers_[at] : 0xff;
        if (at == kControlOffset) data[i] |= kSciEnable;
    }
}

void AcpiPm::write(uint64_t offset, std::span<const uint8_t> data) {
    bool power_off = false;
    {
        std::lock_guard lock(mutex_);
        for (size_t i = 0; i < data.size(); ++i) {
            uint64_t at = offset + i;
            if (at >= kPortCount) break;
            if (at < kStatusOffset + 2) registers_[at] &= static_cast<uint8_t>(~data[i]);
            else registers_[at] = data[i];
        }
        uint16_t control = static_cast<uint16_t>(registers_[kControlOffset] | (registers_[kControlOffset + 1] << 8));
        if ((control & kSleepEnable) && ((control >> kSleepTypeShift) & kSleepTypeMask) == kS5SleepType) {
            power_off = true;
            registers_[kControlOffset + 1] &= static_cast<uint8_t>(~(kSleepEnable >> 8));  // SLP_EN reads as 0
        }
    }
    if (power_off) on_power_off_();
}

}  // namespace minikvm
