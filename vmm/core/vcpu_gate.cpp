#include "vmm/core/vcpu_gate.h"

namespace minikvm {

VcpuGate::VcpuGate(size_t vcpus, bool start_closed)
    : may_run_(vcpus, true), parked_(vcpus, false), closed_(start_closed), holding_(start_closed) {}

void VcpuGate::set_kick(std::function<void(size_t)> kick) {
    std::lock_guard lock(mutex_);
    kick_ = std::move(kick);
}

void VcpuGate::pass(size_t index) {
    // Seen in time: close() sets holding_ before it kicks, and a kick makes
    // the next KVM_RUN return at once (immediate_exit), back to here.
    if (!holding_.load(std::memory_order_acquire)) return;
    std::unique_lock lock(mutex_);
    auto may_go = [&] { return shut_down_ || (!closed_ && may_run_[index]); };
    if (may_go()) return;
    parked_[index] = true;
    ++parked_count_;
    changed_.notify_all();
    changed_.wait(lock, may_go);
    parked_[index] = false;
    --parked_count_;
}

bool VcpuGate::close() {
    {
        std::lock_guard lock(mutex_);
        if (closed_ || shut_down_) return false;
        closed_ = true;
        holding_.store(true, std::memory_order_release);
    }
    kick_all();
    return true;
}

bool VcpuGate::closed() const {
    std::lock_guard lock(mutex_);
    return closed_;
}

bool VcpuGate::wait_parked() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return shut_down_ || parked_count_ == parked_.size(); });
    return !shut_down_;
}

void VcpuGate::open(const std::vector<bool>& may_run) {
    std::lock_guard lock(mutex_);
    bool any_held = false;
    for (size_t i = 0; i < may_run_.size(); ++i) {
        may_run_[i] = i < may_run.size() && may_run[i];
        any_held = any_held || !may_run_[i];
    }
    closed_ = false;
    holding_.store(any_held, std::memory_order_release);
    changed_.notify_all();
}

void VcpuGate::shut_down() {
    std::lock_guard lock(mutex_);
    shut_down_ = true;
    changed_.notify_all();
}

bool VcpuGate::is_shut_down() const {
    std::lock_guard lock(mutex_);
    return shut_down_;
}

void VcpuGate::kick_all() {
    std::function<void(size_t)> kick;
    {
        std::lock_guard lock(mutex_);
        kick = kick_;
    }
    if (!kick) return;
    for (size_t i = 0; i < may_run_.size(); ++i) kick(i);
}

}  // namespace minikvm
