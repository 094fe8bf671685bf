#pragma once
// A PCI INTx line driven, while the guest has its IOAPIC pin
// level-triggered, through a level irqfd with a resample fd
// (KVM_IRQFD_FLAG_RESAMPLE), so neither raising it nor the guest's EOI
// needs minikvm on a vCPU thread:
// - raising it is an eventfd write, from whichever thread finished the
//   work (the event loop, for a completion);
// - the guest's EOI lowers it inside KVM, which then signals the resample
//   fd; the event loop hears that and raises the line again if the device
//   still asserts it (a level interrupt is pending for as long as it is
//   asserted).
// KVM lowers the line only at an EOI: a device's "lower" (a virtio ISR
// read) takes effect at the next one, which is right after the ISR read in
// every interrupt handler. Until then a lowered line can still deliver,
// once, if the guest unmasks its IOAPIC pin first: a spurious interrupt,
// the same as an assigned device's INTx through VFIO.
//
// A guest that programs the pin edge-triggered sends no EOI to the IOAPIC,
// so KVM would never lower a resampling irqfd and every later interrupt
// would be lost. The line reads the pin's trigger mode when it raises
// (KVM_GET_IRQCHIP, an ioctl, not a guest exit) and drives an
// edge-triggered pin through KVM_IRQ_LINE instead, raised and lowered as
// the device says, as before irqfds.
//
// The irqfd is bound on the first level-triggered raise: a slot whose
// device never uses this line (an assigned device binds its own irqfd to
// the GSI) costs KVM nothing. If KVM refuses it, the line says so once and
// stays on KVM_IRQ_LINE.

#include <cstdint>
#include <mutex>
#include <optional>

#include "devices/irq_line.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class EventSources;
class Vm;

class IrqfdLevelLine : public IrqLine {
public:
    // `vm` null: never bound and every pin taken as level-triggered (unit
    // tests without KVM; the eventfds still work). `vm` and `events` must
    // outlive this. Throws std::system_error when the eventfds cannot be made.
    IrqfdLevelLine(const Vm* vm, EventSources& events, uint32_t gsi);
    // Takes the irqfd away (which lowers the line) and stops watching.
    ~IrqfdLevelLine() override;

    IrqfdLevelLine(const IrqfdLevelLine&) = delete;
    IrqfdLevelLine& operator=(const IrqfdLevelLine&) = delete;

    void set_level(bool asserted) override;
    std::optional<uint32_t> gsi() const override { return gsi_; }

    // For tests: the eventfds KVM would be given.
    int trigger_fd() const { return trigger_.get(); }
    int resample_fd() const { return resample_.get(); }
    struct State {
        bool irqfd_bound;   // KVM has the irqfd (the pin was level-triggered)
        bool irqfd_raised;  // up through the irqfd as far as this knows: triggered, no EOI since
        bool line_raised;   // up through KVM_IRQ_LINE (an edge-triggered pin)
        bool operator==(const State&) const = default;
    };
    State state() const;

private:
    void assert_locked();     // mutex_ held: the device asserts
    bool use_irqfd_locked();  // mutex_ held: binds or unbinds by the pin's mode
    void trigger_locked();    // mutex_ held
    void resampled();         // the event loop: the guest EOIed the line

    const Vm* const vm_;
    EventSources& events_;
    const uint32_t gsi_;
    UniqueFd trigger_;
    UniqueFd resample_;

    mutable std::mutex mutex_;
    bool level_ = false;         // what the device asserts
    bool bound_ = false;         // KVM has the irqfd
    bool refused_ = false;       // KVM would not take it: KVM_IRQ_LINE for good
    bool irqfd_raised_ = false;  // triggered and not EOIed since
    bool line_raised_ = false;   // the level set through KVM_IRQ_LINE
    bool logged_binding_ = false;
};

}  // namespace minikvm
