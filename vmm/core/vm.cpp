#include "vmm/core/vm.h"

#include <sys/eventfd.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

#include "vmm/core/error.h"

namespace minikvm {

namespace {
void check(int result, const char* what) {
    if (result < 0) throw std::system_error(errno, std::generic_category(), what);
}

kvm_ioeventfd port_eventfd_request(int fd, uint16_t port, uint32_t length, uint64_t datamatch, uint32_t extra_flags) {
    kvm_ioeventfd request{};
    request.datamatch = datamatch;
    request.addr = port;
    request.len = length;
    request.fd = fd;
    request.flags = KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DATAMATCH | extra_flags;
    return request;
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

void Vm::set_memory_slot(uint32_t slot, uint64_t guest_address, uint64_t size, void* host) const {
    kvm_userspace_memory_region region{};
    region.slot = slot;
    region.guest_phys_addr = guest_address;
    region.memory_size = size;
    region.userspace_addr = reinterpret_cast<uint64_t>(host);
    check(::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region), "KVM_SET_USER_MEMORY_REGION");
}

UniqueFd Vm::add_io_eventfd(uint16_t port, uint32_t length, uint64_t datamatch) const {
    UniqueFd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!event) throw std::system_error(errno, std::generic_category(), "eventfd");
    kvm_ioeventfd request = port_eventfd_request(event.get(), port, length, datamatch, 0);
    check(::ioctl(fd_.get(), KVM_IOEVENTFD, &request), "KVM_IOEVENTFD");
    return event;
}

void Vm::remove_io_eventfd(int fd, uint16_t port, uint32_t length, uint64_t datamatch) const {
    kvm_ioeventfd request = port_eventfd_request(fd, port, length, datamatch, KVM_IOEVENTFD_FLAG_DEASSIGN);
    check(::ioctl(fd_.get(), KVM_IOEVENTFD, &request), "KVM_IOEVENTFD deassign");
}

void Vm::add_level_irqfd(int trigger, int resample, uint32_t gsi) const {
    kvm_irqfd request{};
    request.fd = static_cast<uint32_t>(trigger);
    request.resamplefd = static_cast<uint32_t>(resample);
    request.gsi = gsi;
    request.flags = KVM_IRQFD_FLAG_RESAMPLE;
    check(::ioctl(fd_.get(), KVM_IRQFD, &request), "KVM_IRQFD");
}

void Vm::remove_irqfd(int trigger, uint32_t gsi) const {
    kvm_irqfd request{};
    request.fd = static_cast<uint32_t>(trigger);
    request.gsi = gsi;
    request.flags = KVM_IRQFD_FLAG_DEASSIGN;
    check(::ioctl(fd_.get(), KVM_IRQFD, &request), "KVM_IRQFD deassign");
}

void Vm::add_irqfd(int trigger, uint32_t gsi) const {
    kvm_irqfd request{};
    request.fd = static_cast<uint32_t>(trigger);
    request.gsi = gsi;
    check(::ioctl(fd_.get(), KVM_IRQFD, &request), "KVM_IRQFD");
}

bool Vm::signal_msi(uint64_t address, uint32_t data) const {
    kvm_msi msi{};
    msi.address_lo = static_cast<uint32_t>(address);
    msi.address_hi = static_cast<uint32_t>(address >> 32);
    msi.data = data;
    // >0: delivered; 0: the guest's APIC blocked it. KVM returns -1, which
    // reads as EPERM, when no vCPU has the destination APIC ID: as on
    // hardware, a message to nobody is dropped.
    const int result = ::ioctl(fd_.get(), KVM_SIGNAL_MSI, &msi);
    if (result < 0 && errno == EPERM) return false;
    check(result, "KVM_SIGNAL_MSI");
    return true;
}

void Vm::set_gsi_routing(std::span<const kvm_irq_routing_entry> entries) const {
    // kvm_irq_routing ends in a flexible array: header and entries in one buffer.
    std::vector<uint8_t> buffer(sizeof(kvm_irq_routing) + entries.size_bytes());
    auto* table = reinterpret_cast<kvm_irq_routing*>(buffer.data());
    table->nr = static_cast<uint32_t>(entries.size());
    table->flags = 0;
    std::memcpy(buffer.data() + sizeof(kvm_irq_routing), entries.data(), entries.size_bytes());
    check(::ioctl(fd_.get(), KVM_SET_GSI_ROUTING, table), "KVM_SET_GSI_ROUTING");
}

void Vm::set_irq_line(uint32_t gsi, bool level) const {
    kvm_irq_level irq{};
    irq.irq = gsi;
    irq.level = level ? 1 : 0;
    check(::ioctl(fd_.get(), KVM_IRQ_LINE, &irq), "KVM_IRQ_LINE");
}

std::optional<bool> Vm::ioapic_pin_level_triggered(uint32_t pin) const {
    kvm_irqchip chip{};
    chip.chip_id = KVM_IRQCHIP_IOAPIC;
    if (pin >= KVM_IOAPIC_NUM_PINS || ::ioctl(fd_.get(), KVM_GET_IRQCHIP, &chip) < 0) return std::nullopt;
    return chip.chip.ioapic.redirtbl[pin].fields.trig_mode == 1;
}

}  // namespace minikvm
