#pragma once
// Per-vCPU CPUID: KVM's supported set, with this vCPU's APIC ID and a
// topology (one package, one thread per core, `vcpu_count` cores) that
// agrees across every leaf Linux reads it from.

#include "vmm/kvm_uapi.h"

#include <cstdint>
#include <vector>

namespace minikvm {

std::vector<kvm_cpuid_entry2> make_vcpu_cpuid(std::vector<kvm_cpuid_entry2> supported, uint32_t vcpu_index,
                                              uint32_t vcpu_count);

// Bits needed to number `count` cores (ceil(log2(count))).
uint32_t topology_shift(uint32_t count);

}  // namespace minikvm
