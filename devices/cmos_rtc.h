#pragma once
// The MC146818 CMOS real-time clock at ports 0x70 (index) / 0x71 (data),
// reporting the host's UTC time in BCD. Linux reads it once at boot for the
// wall clock; an absent RTC reads as all-ones, which Linux flags with a
// warning (bit 6 of register D set means "RTC not accessible").

#include <cstdint>
#include <ctime>
#include <functional>
#include <mutex>
#include <span>

#include "vmm/core/bus.h"

namespace minikvm {

class CmosRtc : public BusDevice {
public:
    static constexpr uint16_t kBasePort = 0x70;
    static constexpr uint64_t kPortCount = 2;

    using Clock = std::function<std::time_t()>;
    explicit CmosRtc(Clock clock = [] { return std::time(nullptr); }) : clock_(std::move(clock)) {}

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

private:
    uint8_t read_register(uint8_t index) const;

    Clock clock_;
    std::mutex mutex_;
    uint8_t index_ = 0;
    uint8_t ram_[128] = {};
};

}  // namespace minikvm
