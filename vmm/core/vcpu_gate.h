#pragma once
// All-stop for a debugger: a gate every vCPU thread passes before each
// KVM_RUN. close() shuts it and kicks every vCPU out of the guest; each
// one parks at the gate; wait_parked() returns once all of them are parked
// (so their registers and the guest's memory hold still); open() lets them
// run again, each only if its `may_run` flag says so (gdb's vCont can
// step one vCPU while the others stay). shut_down() releases everything
// for good, when the VM ends.
//
// Without a debugger the machine has no gate: the vCPUs pay nothing. With
// one, an open gate costs one atomic load per KVM_RUN.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <vector>

namespace minikvm {

class VcpuGate {
public:
    // `kick(index)` forces vCPU `index` out of KVM_RUN (VcpuRunner::kick).
    VcpuGate(size_t vcpus, bool start_closed);
    VcpuGate(const VcpuGate&) = delete;
    VcpuGate& operator=(const VcpuGate&) = delete;

    void set_kick(std::function<void(size_t)> kick);
    size_t size() const { return may_run_.size(); }

    // vCPU thread `index`, before every KVM_RUN: returns when it may run or
    // the gate was shut down.
    void pass(size_t index);

    // Any thread: stops every vCPU. Returns true for the call that closed
    // it, false if it was closed already.
    bool close();
    bool closed() const;
    // Until every vCPU is parked (true) or the gate is shut down (false).
    bool wait_parked();
    // Lets the vCPUs whose flag is set run; the others stay parked.
    void open(const std::vector<bool>& may_run);
    void open_all() { open(std::vector<bool>(size(), true)); }
    // The VM is ending: every pass() returns now and from now on.
    void shut_down();
    bool is_shut_down() const;

private:
    void kick_all();

    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::function<void(size_t)> kick_;
    std::vector<bool> may_run_;
    std::vector<bool> parked_;
    size_t parked_count_ = 0;
    bool closed_ = false;
    bool shut_down_ = false;
    // pass()'s fast path: false only while the gate is open for every vCPU.
    std::atomic<bool> holding_{false};
};

}  // namespace minikvm
