#include "vmm/vm.h"

#include <sys/ioctl.h>

#include <cerrno>
#include <system_error>

#include "vmm/error.h"

namespace minikvm {

namespace {
void check(int result, const char* what) {
    if (result < 0) throw std::system_error(errno, std::generic_category(), what);
}
}  // namespace

Vm Vm::create(const Kvm& kvm) {
    int fd = ::ioctl(kvm.fd(), KVM_CREATE_VM, 0);
    if (fd < 0) {
        int error = errno;
        fail(ExitCode::KvmUnavailable, "KVM_CREATE_VM failed: {} (is another hypervisor holding VT-x/AMD-V?)",
             std::system_category().message(error));
    }
    Vm vm{UniqueFd(fd)};
    check(::ioctl(fd, KVM_SET_TSS_ADDR, kTssAddress), "KVM_SET_TSS_ADDR");
    uint64_t identity_map = kIdentityMapAddress;
    if (kvm.check_extension(KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0)
        check(::ioctl(fd, KVM_SET_IDENTITY_MAP_ADDR, &identity_map), "KVM_SET_IDENTITY_MAP_ADDR");
    check(::ioctl(fd, KVM_CREATE_IRQCHIP, 0), "KVM_CREATE_IRQCHIP");
    // The PIT must come after the irqchip it delivers to. The dummy speaker
    // port (0x61) lets Linux gate PIT channel 2 for its TSC calibration.
    kvm_pit_config pit{};
    pit.flags = KVM_PIT_SPEAKER_DUMMY;
    check(::ioctl(fd, KVM_CREATE_PIT2, &pit), "KVM_CREATE_PIT2");
    return vm;
}

void Vm::map_memory(const GuestMemory& memory) {
    uint32_t slot = 0;
    for (const MemoryRegion& region : memory.regions()) {
        kvm_userspace_memory_region kvm_region{};
        kvm_region.slot = slot++;
        kvm_region.guest_phys_addr = region.guest_address;
        kvm_region.memory_size = region.size;
        kvm_region.userspace_addr = reinterpret_cast<uint64_t>(memory.host_base() + region.host_offset);
        check(::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &kvm_region), "KVM_SET_USER_MEMORY_REGION");
    }
}

void Vm::set_irq_line(uint32_t gsi, bool level) const {
    kvm_irq_level irq{};
    irq.irq = gsi;
    irq.level = level ? 1 : 0;
    check(::ioctl(fd_.get(), KVM_IRQ_LINE, &irq), "KVM_IRQ_LINE");
}

}  // namespace minikvm
