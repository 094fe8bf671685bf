#pragma once
// One vCPU file descriptor and its shared kvm_run area.

#include "vmm/core/kvm_uapi.h"

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "vmm/core/host_mapping.h"
#include "vmm/core/kvm.h"
#include "vmm/core/unique_fd.h"
#include "vmm/core/vm.h"

namespace minikvm {

class Vcpu {
public:
    static Vcpu create(const Kvm& kvm, const Vm& vm, uint32_t index);

    uint32_t index() const { return index_; }
    kvm_run& run_state() const { return *reinterpret_cast<kvm_run*>(run_mapping_.data()); }

    // Enters the guest. Returns 0, or -errno (EINTR when kicked by a signal).
    int run() const;

    kvm_regs regs() const;
    void set_regs(const kvm_regs& regs) const;
    kvm_sregs sregs() const;
    void set_sregs(const kvm_sregs& sregs) const;
    kvm_fpu fpu() const;
    void set_fpu(const kvm_fpu& fpu) const;
    // KVM_SET_GUEST_DEBUG: breakpoints, single-step, debug registers (a debugger's).
    void set_guest_debug(const kvm_guest_debug& debug) const;
    void set_cpuid(std::span<const kvm_cpuid_entry2> entries) const;
    // Sets each (index, value) pair; throws if KVM accepts fewer.
    void set_msrs(std::span<const std::pair<uint32_t, uint64_t>> msrs) const;
    kvm_lapic_state lapic() const;
    void set_lapic(const kvm_lapic_state& state) const;
    uint32_t mp_state() const;
    // The guest TSC's frequency (KVM_GET_TSC_KHZ), or 0 where KVM cannot say.
    uint32_t tsc_khz() const;

private:
    Vcpu(uint32_t index, UniqueFd fd, HostMapping run_mapping)
        : index_(index), fd_(std::move(fd)), run_mapping_(std::move(run_mapping)) {}

    uint32_t index_;
    UniqueFd fd_;
    HostMapping run_mapping_;
};

}  // namespace minikvm
