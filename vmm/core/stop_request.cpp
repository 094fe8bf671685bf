#include "vmm/core/stop_request.h"

#include <sys/eventfd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace minikvm {

StopRequest::StopRequest() : event_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!event_) throw std::system_error(errno, std::generic_category(), "eventfd");
}

bool StopRequest::request(int exit_status, std::string reason) {
    {
        std::lock_guard lock(mutex_);
        if (requested_.load(std::memory_order_relaxed)) return false;
        exit_status_ = exit_status;
        reason_ = std::move(reason);
        requested_.store(true, std::memory_order_release);
    }
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(event_.get(), &one, sizeof(one));
    return true;
}

int StopRequest::exit_status() const {
    std::lock_guard lock(mutex_);
    return exit_status_;
}

std::string StopRequest::reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
}

}  // namespace minikvm
