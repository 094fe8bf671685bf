#pragma once
// How any thread (a vCPU, a device, the input reader) asks the VM to stop
// with a given process exit status. The first request wins; the main thread
// waits on event_fd() and then stops and joins everything.

#include <atomic>
#include <mutex>
#include <string>

#include "vmm/core/unique_fd.h"

namespace minikvm {

class StopRequest {
public:
    StopRequest();

    // Returns true if this call was the first request.
    bool request(int exit_status, std::string reason);
    bool requested() const { return requested_.load(std::memory_order_acquire); }
    int exit_status() const;
    std::string reason() const;
    int event_fd() const { return event_.get(); }

private:
    UniqueFd event_;
    std::atomic<bool> requested_{false};
    mutable std::mutex mutex_;
    int exit_status_ = 0;
    std::string reason_;
};

}  // namespace minikvm
