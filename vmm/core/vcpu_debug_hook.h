#pragma once
// What a debugger attached to the vCPUs hears from them: KVM_EXIT_DEBUG
// (a breakpoint, a watchpoint, a finished single-step), and KVM failing on
// an instruction the debugger may have put there. Called on the vCPU's own
// thread, between two KVM_RUNs; the debugger decides whether every vCPU
// stops (VcpuGate::close) or this one just runs on.

#include "vmm/core/kvm_uapi.h"
#include "vmm/core/vcpu.h"

namespace minikvm {

class VcpuDebugHook {
public:
    virtual ~VcpuDebugHook() = default;
    virtual void debug_exit(const Vcpu& vcpu, const kvm_debug_exit_arch& exit) = 0;
    // KVM_EXIT_INTERNAL_ERROR: true if the debugger caused it and took it
    // as a stop (the vCPU is then resumable); false for a real failure.
    virtual bool internal_error(const Vcpu& vcpu) = 0;
};

}  // namespace minikvm
