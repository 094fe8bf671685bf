#pragma once
// Runs one vCPU on its own thread: KVM_RUN, then dispatch the exit (port
// I/O and MMIO to the buses; shutdown, system events and KVM errors end the
// VM with the matching exit status), until the VM is asked to stop.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <thread>

#include "vmm/core/bus.h"
#include "vmm/core/stop_request.h"
#include "vmm/core/vcpu.h"
#include "vmm/core/vcpu_debug_hook.h"
#include "vmm/core/vcpu_gate.h"

namespace minikvm {

class VcpuRunner {
public:
    // What the last probe found. A vCPU halted with interrupts disabled
    // can never run again (only an NMI could wake it): Linux without ACPI
    // powers off exactly that way. HaltedIdle: halted with interrupts on,
    // waiting for one (an idle guest).
    enum class ProbeResult : uint8_t { Pending, Running, NotStarted, HaltedIdle, HaltedForGood };

    // `process_start` is when main() began: vCPU 0 logs the time to its first KVM_RUN.
    VcpuRunner(Vcpu& vcpu, IoBus& io_bus, MmioBus& mmio_bus, StopRequest& stop,
               std::chrono::steady_clock::time_point process_start);
    ~VcpuRunner();
    VcpuRunner(const VcpuRunner&) = delete;
    VcpuRunner& operator=(const VcpuRunner&) = delete;

    // Installs the (empty) handler of the signal used to kick vCPUs out of
    // KVM_RUN. Call once before starting any runner.
    static void install_kick_handler();
    // SIGRTMIN: a real-time signal, so SIGUSR1 and SIGUSR2 stay free for
    // the user. Only vCPU threads unblock it.
    static int kick_signal();

    // With a debugger (--gdb): the all-stop gate passed before every
    // KVM_RUN, and who hears KVM_EXIT_DEBUG. Before start().
    void attach_debugger(VcpuGate& gate, VcpuDebugHook& hook) {
        gate_ = &gate;
        debug_hook_ = &hook;
    }

    void start();
    void request_stop();
    void join();
    // Forces the vCPU out of KVM_RUN soon (a signal, and immediate_exit for
    // a thread not in KVM_RUN yet); it then looks at its requests.
    void kick();

    void request_probe();
    ProbeResult probe_result() const { return probe_result_.load(std::memory_order_acquire); }
    // The RIP the last probe saw; valid once probe_result() is not Pending.
    uint64_t probe_rip() const { return probe_rip_.load(std::memory_order_acquire); }
    // Milliseconds from process start to this vCPU's first KVM_RUN; nullopt before it.
    std::optional<double> first_run_ms() const {
        const double ms = first_run_ms_.load(std::memory_order_acquire);
        return ms < 0 ? std::nullopt : std::optional(ms);
    }

private:
    void thread_main();
    void loop();
    // Returns false when the VM must stop.
    bool handle_exit();
    void run_probe();

    Vcpu& vcpu_;
    IoBus& io_bus_;
    MmioBus& mmio_bus_;
    StopRequest& stop_;
    VcpuGate* gate_ = nullptr;
    VcpuDebugHook* debug_hook_ = nullptr;
    std::thread thread_;
    std::atomic<bool> stop_requested_{false};
    std::atomic<bool> probe_requested_{false};
    std::atomic<ProbeResult> probe_result_{ProbeResult::Pending};
    std::atomic<uint64_t> probe_rip_{0};
    std::chrono::steady_clock::time_point process_start_;
    std::atomic<double> first_run_ms_{-1};
};

}  // namespace minikvm
