#pragma once
// The GdbTarget over minikvm's vCPUs (all-stop). Every vCPU passes a
// VcpuGate before each KVM_RUN; a stop (a breakpoint or watchpoint hit, a
// finished step, gdb's Ctrl-C) closes the gate, which kicks every vCPU out
// of the guest and parks it, and signals stop_fd(); the server then waits
// for all of them to park and takes the stop with take_stop().
//
// - Registers: KVM_GET/SET_REGS, _SREGS, _FPU (kvm_x86_registers.h).
// - Memory: guest-virtual addresses through the guest's page tables as the
//   thread sees them (guest_page_walk.h), only ever guest RAM.
// - Software breakpoints (Z0): 0xCC written through GuestMemory at the
//   breakpoint's physical address, the original byte kept and shown to
//   gdb's memory reads; KVM_GUESTDBG_USE_SW_BP makes the int3 exit to us.
//   An int3 that is not ours goes back to the guest (KVM_GUESTDBG_INJECT_BP:
//   Linux patches its text with int3). Where KVM cannot run an int3 at all
//   (PVM: guest CPL0 code is emulated and its emulator fails on int3 with
//   KVM_EXIT_INTERNAL_ERROR, the vCPU left at the int3), an internal error
//   exactly at one of our breakpoints is that breakpoint's hit.
// - Hardware breakpoints and watchpoints (Z1, Z2, Z4): DR0-DR3 and DR7
//   through KVM_GUESTDBG_USE_HW_BP (x86_debug_registers.h); which one fired
//   comes from DR6. A vCPU resumed on one of its instruction breakpoints
//   first steps over it with that breakpoint left out (RFLAGS.RF is not
//   honoured by every KVM: PVM's emulator ignores it).
// - Single-step: KVM_GUESTDBG_SINGLESTEP, with KVM_GUESTDBG_BLOCKIRQ where
//   KVM offers it, so a step does not land in an interrupt handler.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "vmm/backends/gdb/gdb_target.h"
#include "vmm/backends/gdb/x86_debug_registers.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/guest_page_walk.h"
#include "vmm/core/unique_fd.h"
#include "vmm/core/vcpu.h"
#include "vmm/core/vcpu_debug_hook.h"
#include "vmm/core/vcpu_gate.h"

namespace minikvm::gdb {

class KvmGdbTarget : public GdbTarget, public VcpuDebugHook {
public:
    // `guest_debug_flags`: what KVM_CHECK_EXTENSION(KVM_CAP_SET_GUEST_DEBUG2)
    // said (0 where KVM does not say). `kill` ends the VM (gdb's `k`).
    KvmGdbTarget(std::vector<const Vcpu*> vcpus, const GuestMemory& memory, VcpuGate& gate,
                 uint32_t guest_debug_flags, std::function<void()> kill);

    // Readable (an eventfd) when a stop is on its way; the server reads it,
    // waits for the gate's vCPUs to park, then takes the stop.
    int stop_fd() const { return stop_event_.get(); }
    void clear_stop_fd() const;
    std::optional<StopEvent> take_stop();
    // The thread gdb should see as current when it attaches.
    ThreadId current_thread() const;

    // GdbTarget
    std::vector<ThreadId> threads() const override;
    std::string thread_name(ThreadId thread) const override;
    std::optional<X86RegisterFile> read_registers(ThreadId thread) override;
    bool write_registers(ThreadId thread, const X86RegisterFile& registers) override;
    size_t read_memory(ThreadId thread, uint64_t address, std::span<uint8_t> data) override;
    size_t write_memory(ThreadId thread, uint64_t address, std::span<const uint8_t> data) override;
    TargetStatus insert_breakpoint(BreakpointType type, uint64_t address, uint64_t kind) override;
    TargetStatus remove_breakpoint(BreakpointType type, uint64_t address, uint64_t kind) override;
    bool resume(std::span<const ThreadAction> actions) override;
    void interrupt() override;
    void detach() override;
    void kill() override;

    // VcpuDebugHook (vCPU threads)
    void debug_exit(const Vcpu& vcpu, const kvm_debug_exit_arch& exit) override;
    bool internal_error(const Vcpu& vcpu) override;

private:
    struct SoftwareBreakpoint {
        uint64_t physical;
        uint8_t original;
    };

    const Vcpu* vcpu_of(ThreadId thread) const;
    std::optional<PagingRegisters> paging(const Vcpu& vcpu) const;
    // KVM_SET_GUEST_DEBUG for vCPU `index` from the breakpoints and its action.
    void apply_debug(size_t index, uint32_t extra = 0);
    // Records the stop (a breakpoint's wins over a Ctrl-C) and closes the gate.
    void stop(const StopEvent& event);

    std::vector<const Vcpu*> vcpus_;
    const GuestMemory& memory_;
    VcpuGate& gate_;
    uint32_t guest_debug_flags_;
    std::function<void()> kill_;
    UniqueFd stop_event_;

    mutable std::mutex mutex_;
    std::map<uint64_t, SoftwareBreakpoint> software_;  // by guest-virtual address
    X86DebugRegisters hardware_;
    std::vector<ThreadAction::Kind> actions_;
    std::vector<bool> stepping_over_;  // a vCPU stepping off its own instruction breakpoint
    std::optional<StopEvent> pending_;
    ThreadId last_thread_ = 1;
    bool warned_internal_error_ = false;
};

}  // namespace minikvm::gdb
