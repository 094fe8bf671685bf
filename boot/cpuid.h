#pragma once
// Per-vCPU CPUID: KVM's supported set, with this vCPU's APIC ID and a
// topology (one package, one thread per core, `vcpu_count` cores) that
// agrees across every leaf Linux reads it from, and the TSC frequency in the
// hypervisor timing leaf, so guests need not calibrate against the PIT.

#include "vmm/core/kvm_uapi.h"

#include <cstdint>
#include <vector>

namespace minikvm {

// `tsc_khz` (0: unknown) goes to leaf 0x40000010 (EAX: TSC kHz, EBX: LAPIC
// timer kHz), the timing leaf VMware defined and QEMU and Cloud Hypervisor
// fill too; KVM's signature leaf 0x40000000 is raised to cover it.
std::vector<kvm_cpuid_entry2> make_vcpu_cpuid(std::vector<kvm_cpuid_entry2> supported, uint32_t vcpu_index,
                                              uint32_t vcpu_count, uint32_t tsc_khz = 0);

constexpr uint32_t kCpuidHypervisorBase = 0x40000000;
constexpr uint32_t kCpuidHypervisorTiming = 0x40000010;
// KVM's LAPIC timer counts nanoseconds (APIC_BUS_CYCLE_NS_DEFAULT = 1).
constexpr uint32_t kKvmApicTimerKhz = 1000000;

// Bits needed to number `count` cores (ceil(log2(count))).
uint32_t topology_shift(uint32_t count);

}  // namespace minikvm
