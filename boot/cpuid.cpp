#include "boot/cpuid.h"

namespace minikvm {

namespace {

constexpr uint32_t kHypervisorBit = 1U << 31;   // leaf 1 ECX
constexpr uint32_t kHyperThreadingBit = 1U << 28;  // leaf 1 EDX: EBX[23:16] is valid
constexpr uint32_t kLevelTypeSmt = 1;
constexpr uint32_t kLevelTypeCore = 2;

// Leaves 0xB and 0x1F: extended topology, one subleaf per level.
void set_extended_topology(kvm_cpuid_entry2& entry, uint32_t apic_id, uint32_t vcpu_count) {
    entry.edx = apic_id;
    switch (entry.index) {
    case 0:  // SMT level: one thread per core
        entry.eax = 0;
        entry.ebx = 1;
        entry.ecx = (kLevelTypeSmt << 8) | 0;
        break;
    case 1:  // core level: every vCPU is a core of one package
        entry.eax = topology_shift(vcpu_count);
        entry.ebx = vcpu_count;
        entry.ecx = (kLevelTypeCore << 8) | 1;
        break;
    default:  // no further levels
        entry.eax = 0;
        entry.ebx = 0;
        entry.ecx = entry.index;
        break;
    }
}

// The hypervisor timing leaf, on top of KVM's own leaves. Only where KVM's
// signature leaf is there: a guest finds 0x40000010 through its EAX.
void add_timing_leaf(std::vector<kvm_cpuid_entry2>& entries, uint32_t tsc_khz) {
    kvm_cpuid_entry2* base = nullptr;
    kvm_cpuid_entry2* timing = nullptr;
    for (kvm_cpuid_entry2& entry : entries) {
        if (entry.function == kCpuidHypervisorBase) base = &entry;
        if (entry.function == kCpuidHypervisorTiming) timing = &entry;
    }
    if (base == nullptr) return;
    if (base->eax < kCpuidHypervisorTiming) base->eax = kCpuidHypervisorTiming;
    if (timing == nullptr) {
        entries.push_back(kvm_cpuid_entry2{});
        timing = &entries.back();
        timing->function = kCpuidHypervisorTiming;
    }
    timing->index = 0;
    timing->flags = 0;
    timing->eax = tsc_khz;
    timing->ebx = kKvmApicTimerKhz;
    timing->ecx = 0;
    timing->edx = 0;
}

}  // namespace

uint32_t topology_shift(uint32_t count) {
    uint32_t shift = 0;
    while ((1U << shift) < count) ++shift;
    return shift;
}

std::vector<kvm_cpuid_entry2> make_vcpu_cpuid(std::vector<kvm_cpuid_entry2> entries, uint32_t vcpu_index,
                                              uint32_t vcpu_count, uint32_t tsc_khz) {
    const uint32_t apic_id = vcpu_index;  // APIC IDs are dense, 0 is the boot CPU
    for (kvm_cpuid_entry2& entry : entries) {
        switch (entry.function) {
        case 0x1:
            entry.ebx = (entry.ebx & 0x0000ffff) | (apic_id << 24) | ((vcpu_count & 0xff) << 16);
            entry.ecx |= kHypervisorBit;
            if (vcpu_count > 1) entry.edx |= kHyperThreadingBit;
            else entry.edx &= ~kHyperThreadingBit;
            break;
        case 0x4:  // deterministic cache parameters (Intel)
            if ((entry.eax & 0x1f) != 0) {
                uint32_t level = (entry.eax >> 5) & 0x7;
                // L3 is shared by the package, L1/L2 are per core.
                uint32_t sharing = level >= 3 ? vcpu_count - 1 : 0;
                entry.eax = (entry.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((vcpu_count - 1) & 0x3f) << 26);
            }
            break;
        case 0xb:
        case 0x1f:
            set_extended_topology(entry, apic_id, vcpu_count);
            break;
        case 0x80000008:  // AMD: number of cores and APIC ID width
            entry.ecx = (entry.ecx & ~0xf0ffU) | ((vcpu_count - 1) & 0xff) | (topology_shift(vcpu_count) << 12);
            break;
        case 0x8000001e:  // AMD extended APIC ID, core and node IDs
            entry.eax = apic_id;
            entry.ebx = (entry.ebx & ~0xffffU) | (apic_id & 0xff);  // one thread per core
            entry.ecx = 0;                                           // node 0, one node
            break;
        default:
            break;
        }
    }
    if (tsc_khz != 0) add_timing_leaf(entries, tsc_khz);
    return entries;
}

}  // namespace minikvm
