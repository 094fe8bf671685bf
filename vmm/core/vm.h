#pragma once
// The VM file descriptor: memory slots, the in-kernel irqchip and PIT, and
// interrupt lines.

#include <cstdint>
#include <optional>
#include <span>

#include "vmm/core/guest_memory.h"
#include "vmm/core/kvm.h"
#include "vmm/core/unique_fd.h"

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
    // Registers every region of `memory` as a KVM memory slot, slots 0 to
    // regions - 1 (MemorySlots hands out the rest).
    void map_memory(const GuestMemory& memory);
    // KVM_SET_USER_MEMORY_REGION for one slot: [guest_address, + size)
    // backed by host memory at `host`; size 0 deletes the slot.
    void set_memory_slot(uint32_t slot, uint64_t guest_address, uint64_t size, void* host) const;
    // Drives interrupt line `gsi` of the in-kernel irqchip to `level`.
    void set_irq_line(uint32_t gsi, bool level) const;
    // Whether the guest programmed pin `pin` of the in-kernel IOAPIC
    // level-triggered (KVM_GET_IRQCHIP); nullopt when KVM cannot say.
    std::optional<bool> ioapic_pin_level_triggered(uint32_t pin) const;

    // An eventfd KVM signals when the guest writes `length` bytes equal to
    // `datamatch` to I/O port `port`. The write completes inside the kernel:
    // a virtqueue kick never returns to the vCPU thread's exit loop.
    UniqueFd add_io_eventfd(uint16_t port, uint32_t length, uint64_t datamatch) const;
    void remove_io_eventfd(int fd, uint16_t port, uint32_t length, uint64_t datamatch) const;

    // Level-triggered interrupt through eventfds: a write to `trigger` asserts
    // `gsi`; on the guest's EOI, KVM de-asserts it and signals `resample`, so
    // the device can assert again if its condition still holds.
    void add_level_irqfd(int trigger, int resample, uint32_t gsi) const;
    void remove_irqfd(int trigger, uint32_t gsi) const;
    // Edge-triggered: a write to `trigger` signals `gsi` once (an MSI route).
    void add_irqfd(int trigger, uint32_t gsi) const;

    // Injects one MSI directly (KVM_SIGNAL_MSI): the path for a message that
    // has no route of its own, when KVM's routing table is full. False when
    // no vCPU has the destination APIC ID (dropped, as on hardware).
    bool signal_msi(uint64_t address, uint32_t data) const;

    // Replaces KVM's whole interrupt routing table (GsiRouting owns it).
    void set_gsi_routing(std::span<const kvm_irq_routing_entry> entries) const;

private:
    explicit Vm(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

}  // namespace minikvm
