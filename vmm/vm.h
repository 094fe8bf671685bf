#pragma once
// The VM file descriptor: memory slots, the in-kernel irqchip and PIT, and
// interrupt lines.

#include <cstdint>

#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/unique_fd.h"

namespace minikvm {

class Vm {
public:
    // Addresses KVM needs for its real-mode TSS (3 pages) and EPT identity
    // map (1 page), just below the BIOS area at the top of 4 GiB, inside the
    // MMIO hole so they never overlap RAM.
    static constexpr uint64_t kTssAddress = 0xfffb'd000;
    static constexpr uint64_t kIdentityMapAddress = 0xfffb'c000;

    // Creates the VM with its irqchip (IOAPIC+PIC+LAPICs) and PIT.
    static Vm create(const Kvm& kvm);

    int fd() const { return fd_.get(); }
    // Registers every region of `memory` as a KVM memory slot.
    void map_memory(const GuestMemory& memory);
    // Drives interrupt line `gsi` of the in-kernel irqchip to `level`.
    void set_irq_line(uint32_t gsi, bool level) const;

private:
    explicit Vm(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

}  // namespace minikvm
