#include "vmm/core/rate_limited_log.h"

namespace minikvm {

bool RateLimitedLog::log(spdlog::level::level_enum level, std::string_view message) {
    uint64_t suppressed = 0;
    {
        std::lock_guard lock(mutex_);
        ++offered_;
        const Clock::time_point now = Clock::now();
        if (now - window_start_ >= std::chrono::seconds(1)) {
            window_start_ = now;
            in_window_ = 0;
        }
        if (in_window_ >= burst_) {
            ++suppressed_;
            return false;
        }
        ++in_window_;
        suppressed = suppressed_;
        suppressed_ = 0;
    }
    if (suppressed != 0)
        spdlog::log(level, "{} ({} similar lines suppressed)", message, suppressed);
    else
        spdlog::log(level, "{}", message);
    return true;
}

uint64_t RateLimitedLog::offered() const {
    std::lock_guard lock(mutex_);
    return offered_;
}

}  // namespace minikvm
