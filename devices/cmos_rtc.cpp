#include "devices/cmos_rtc.h"

#include <algorithm>

namespace minikvm {

namespace {

constexpr uint8_t kSeconds = 0x00, kMinutes = 0x02, kHours = 0x04, kWeekday = 0x06, kDay = 0x07, kMonth = 0x08,
                  kYear = 0x09, kStatusA = 0x0a, kStatusB = 0x0b, kStatusC = 0x0c, kStatusD = 0x0d, kCentury = 0x32;

constexpr uint8_t kStatusAIdle = 0x26;        // 32.768 kHz base, 1024 Hz rate, no update in progress
constexpr uint8_t kStatusB24HourBcd = 0x02;   // 24-hour mode, BCD, no interrupts
constexpr uint8_t kStatusDValid = 0x80;       // battery good, time valid

uint8_t to_bcd(int value) { return static_cast<uint8_t>(((value / 10) << 4) | (value % 10)); }

}  // namespace

void CmosRtc::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mutex_);
    uint8_t value = offset == 1 ? read_register(index_) : 0xff;
    std::fill(data.begin(), data.end(), value);
}

void CmosRtc::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    std::lock_guard lock(mutex_);
    if (offset == 0) {
        index_ = data[0] & 0x7f;  // bit 7 is the NMI mask, not part of the index
    } else if (index_ > kStatusD) {
        ram_[index_] = data[0];  // the clock itself is read-only: time comes from the host
    }
}

uint8_t CmosRtc::read_register(uint8_t index) const {
    std::time_t now = clock_();
    std::tm utc{};
    gmtime_r(&now, &utc);
    switch (index) {
    case kSeconds: return to_bcd(utc.tm_sec);
    case kMinutes: return to_bcd(utc.tm_min);
    case kHours: return to_bcd(utc.tm_hour);
    case kWeekday: return to_bcd(utc.tm_wday + 1);
    case kDay: return to_bcd(utc.tm_mday);
    case kMonth: return to_bcd(utc.tm_mon + 1);
    case kYear: return to_bcd(utc.tm_year % 100);
    case kCentury: return to_bcd((utc.tm_year + 1900) / 100);
    case kStatusA: return kStatusAIdle;
    case kStatusB: return kStatusB24HourBcd;
    case kStatusC: return 0;
    case kStatusD: return kStatusDValid;
    default: return index < sizeof(ram_) ? ram_[index] : 0;
    }
}

}  // namespace minikvm
