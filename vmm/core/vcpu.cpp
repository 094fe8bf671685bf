#include "vmm/core/vcpu.h"

#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>

#include <fmt/format.h>

namespace minikvm {

namespace {
void check(int result, const char* what) {
    if (result < 0) throw std::system_error(errno, std::generic_category(), what);
}
}  // namespace

Vcpu Vcpu::create(const Kvm& kvm, const Vm& vm, uint32_t index) {
    int fd = ::ioctl(vm.fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(index));
    check(fd, "KVM_CREATE_VCPU");
    UniqueFd owned(fd);
    HostMapping run = HostMapping::shared(fd, kvm.vcpu_mmap_size());
    return Vcpu(index, std::move(owned), std::move(run));
}

int Vcpu::run() const { return ::ioctl(fd_.get(), KVM_RUN, 0) < 0 ? -errno : 0; }

kvm_regs Vcpu::regs() const {
    kvm_regs regs{};
    check(::ioctl(fd_.get(), KVM_GET_REGS, &regs), "KVM_GET_REGS");
    return regs;
}

void Vcpu::set_regs(const kvm_regs& regs) const { check(::ioctl(fd_.get(), KVM_SET_REGS, &regs), "KVM_SET_REGS"); }

kvm_sregs Vcpu::sregs() const {
    kvm_sregs sregs{};
    check(::ioctl(fd_.get(), KVM_GET_SREGS, &sregs), "KVM_GET_SREGS");
    return sregs;
}

void Vcpu::set_sregs(const kvm_sregs& sregs) const {
    check(::ioctl(fd_.get(), KVM_SET_SREGS, &sregs), "KVM_SET_SREGS");
}

kvm_fpu Vcpu::fpu() const {
    kvm_fpu fpu{};
    check(::ioctl(fd_.get(), KVM_GET_FPU, &fpu), "KVM_GET_FPU");
    return fpu;
}

void Vcpu::set_guest_debug(const kvm_guest_debug& debug) const {
    check(::ioctl(fd_.get(), KVM_SET_GUEST_DEBUG, &debug), "KVM_SET_GUEST_DEBUG");
}

void Vcpu::set_fpu(const kvm_fpu& fpu) const { check(::ioctl(fd_.get(), KVM_SET_FPU, &fpu), "KVM_SET_FPU"); }

uint32_t Vcpu::tsc_khz() const {
    const int khz = ::ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0);
    return khz > 0 ? static_cast<uint32_t>(khz) : 0;
}

void Vcpu::set_cpuid(std::span<const kvm_cpuid_entry2> entries) const {
    size_t bytes = sizeof(kvm_cpuid2) + entries.size() * sizeof(kvm_cpuid_entry2);
    auto buffer = std::make_unique<uint8_t[]>(bytes);
    std::memset(buffer.get(), 0, bytes);
    auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buffer.get());
    cpuid->nent = static_cast<uint32_t>(entries.size());
    std::memcpy(cpuid->entries, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
    check(::ioctl(fd_.get(), KVM_SET_CPUID2, cpuid), "KVM_SET_CPUID2");
}

void Vcpu::set_msrs(std::span<const std::pair<uint32_t, uint64_t>> msrs) const {
    size_t bytes = sizeof(kvm_msrs) + msrs.size() * sizeof(kvm_msr_entry);
    auto buffer = std::make_unique<uint8_t[]>(bytes);
    std::memset(buffer.get(), 0, bytes);
    auto* list = reinterpret_cast<kvm_msrs*>(buffer.get());
    list->nmsrs = static_cast<uint32_t>(msrs.size());
    for (size_t i = 0; i < msrs.size(); ++i) {
        list->entries[i].index = msrs[i].first;
        list->entries[i].data = msrs[i].second;
    }
    int written = ::ioctl(fd_.get(), KVM_SET_MSRS, list);
    check(written, "KVM_SET_MSRS");
    // KVM stops at the first MSR it refuses and returns how many it set.
    if (static_cast<size_t>(written) != msrs.size())
        throw std::runtime_error(fmt::format("KVM_SET_MSRS: MSR {:#x} refused", msrs[written].first));
}

kvm_lapic_state Vcpu::lapic() const {
    kvm_lapic_state state{};
    check(::ioctl(fd_.get(), KVM_GET_LAPIC, &state), "KVM_GET_LAPIC");
    return state;
}

void Vcpu::set_lapic(const kvm_lapic_state& state) const {
    check(::ioctl(fd_.get(), KVM_SET_LAPIC, &state), "KVM_SET_LAPIC");
}

uint32_t Vcpu::mp_state() const {
    kvm_mp_state state{};
    check(::ioctl(fd_.get(), KVM_GET_MP_STATE, &state), "KVM_GET_MP_STATE");
    return state.mp_state;
}

}  // namespace minikvm
