#pragma once
// A log line a guest can trigger at will (a malformed request, a dropped
// packet) must not flood the host's log: at most `burst` lines per second
// reach spdlog, and the next line that does says how many were suppressed.
// Thread-safe.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string_view>

#include <spdlog/spdlog.h>

namespace minikvm {

class RateLimitedLog {
public:
    explicit RateLimitedLog(unsigned burst_per_second = 5) : burst_(burst_per_second) {}

    // Logs `message` at `level` unless this second's budget is spent.
    // Returns whether it was logged.
    bool log(spdlog::level::level_enum level, std::string_view message);

    // Lines offered since construction, logged or not.
    uint64_t offered() const;

private:
    using Clock = std::chrono::steady_clock;

    const unsigned burst_;
    mutable std::mutex mutex_;
    Clock::time_point window_start_{};
    unsigned in_window_ = 0;
    uint64_t suppressed_ = 0;
    uint64_t offered_ = 0;
};

}  // namespace minikvm
