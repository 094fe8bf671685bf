// IrqfdLevelLine: raise by eventfd, lowered by KVM at the guest's EOI,
// raised again at the resample while the device still asserts; an
// edge-triggered pin through KVM_IRQ_LINE (needs /dev/kvm: those cases are
// tagged [kvm], see test_vm_eventfds.cpp).
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <thread>

#include "devices/irqfd_level_line.h"
#include "vmm/core/event_sources.h"
#include "vmm/core/kvm.h"
#include "vmm/core/vm.h"

using namespace minikvm;

namespace {

// Holds the one handler the line watches with, to run it by hand.
struct OneWatch : EventSources {
    int fd = -1;
    Handler handler;
    void watch(int watched, uint32_t, Handler on_ready) override {
        fd = watched;
        handler = std::move(on_ready);
    }
    void set_interest(int, uint32_t) override {}
    void unwatch(int) override { handler = nullptr; }
};

// Triggers written since the last call (what KVM would have consumed).
uint64_t triggers(const IrqfdLevelLine& line) {
    uint64_t count = 0;
    if (::read(line.trigger_fd(), &count, sizeof count) != sizeof count) return 0;
    return count;
}

// The guest EOIs the line: KVM lowers it and signals the resample fd; the
// event loop runs the handler.
void eoi(const IrqfdLevelLine& line, OneWatch& events) {
    const uint64_t one = 1;
    REQUIRE(::write(line.resample_fd(), &one, sizeof one) == sizeof one);
    REQUIRE(events.handler);
    events.handler(EventSources::kReadable);
}

kvm_irqchip ioapic(const Vm& vm) {
    kvm_irqchip chip{};
    chip.chip_id = KVM_IRQCHIP_IOAPIC;
    REQUIRE(::ioctl(vm.fd(), KVM_GET_IRQCHIP, &chip) == 0);
    return chip;
}

// The guest's programming of an IOAPIC pin, masked, so nothing is delivered
// and IRR shows the line's level.
void program_pin(const Vm& vm, uint32_t pin, bool level_triggered) {
    kvm_irqchip chip = ioapic(vm);
    chip.chip.ioapic.redirtbl[pin].fields.vector = 0x40;
    chip.chip.ioapic.redirtbl[pin].fields.mask = 1;
    chip.chip.ioapic.redirtbl[pin].fields.trig_mode = level_triggered ? 1 : 0;
    REQUIRE(::ioctl(vm.fd(), KVM_SET_IRQCHIP, &chip) == 0);
}

bool pin_asserted(const Vm& vm, uint32_t pin) { return (ioapic(vm).chip.ioapic.irr >> pin) & 1; }

// KVM injects an irqfd's trigger from a work queue: wait for it.
bool pin_becomes(const Vm& vm, uint32_t pin, bool asserted) {
    for (int i = 0; i < 200; ++i) {
        if (pin_asserted(vm, pin) == asserted) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
}

}  // namespace

TEST_CASE("irqfd INTx: one trigger per raise, lowering waits for the EOI") {
    OneWatch events;
    IrqfdLevelLine line(nullptr, events, 17);
    CHECK(events.fd == line.resample_fd());
    CHECK(line.gsi() == 17u);

    line.set_level(false);  // never raised: nothing
    CHECK(triggers(line) == 0);
    line.set_level(true);
    CHECK(triggers(line) == 1);
    CHECK(line.state().irqfd_raised);
    line.set_level(true);  // already up in KVM
    CHECK(triggers(line) == 0);

    line.set_level(false);  // the ISR read: KVM keeps it up until the EOI
    CHECK(line.state().irqfd_raised);
    eoi(line, events);
    CHECK_FALSE(line.state().irqfd_raised);
    CHECK(triggers(line) == 0);  // lowered, not raised again
}

TEST_CASE("irqfd INTx: an EOI while the device still asserts raises the line again") {
    OneWatch events;
    IrqfdLevelLine line(nullptr, events, 18);
    line.set_level(true);
    CHECK(triggers(line) == 1);
    // The ISR read, then new work before the EOI: the line is still up in
    // KVM, so no trigger now; the EOI must not lose the new interrupt.
    line.set_level(false);
    line.set_level(true);
    CHECK(triggers(line) == 0);
    eoi(line, events);
    CHECK(triggers(line) == 1);
    CHECK(line.state().irqfd_raised);
    // Nobody lowered it: every EOI raises it again, as a level line does.
    eoi(line, events);
    CHECK(triggers(line) == 1);
}

TEST_CASE("irqfd INTx: a resample wake-up with nothing to read changes nothing") {
    OneWatch events;
    IrqfdLevelLine line(nullptr, events, 19);
    line.set_level(true);
    CHECK(triggers(line) == 1);
    events.handler(EventSources::kReadable);  // no EOI behind it
    CHECK(line.state().irqfd_raised);
    CHECK(triggers(line) == 0);
}

TEST_CASE("irqfd INTx: a level-triggered pin gets the irqfd, an edge-triggered one KVM_IRQ_LINE", "[kvm]") {
    Kvm kvm = Kvm::open();
    if (kvm.check_extension(KVM_CAP_IRQFD_RESAMPLE) <= 0) {
        WARN("this KVM has no resampling irqfds: the machine uses KVM_IRQ_LINE");
        return;
    }
    Vm vm = Vm::create(kvm);
    constexpr uint32_t kPin = 20;
    OneWatch events;
    {
        IrqfdLevelLine line(&vm, events, kPin);
        program_pin(vm, kPin, true);
        CHECK(vm.ioapic_pin_level_triggered(kPin) == true);
        line.set_level(true);
        CHECK(line.state() == IrqfdLevelLine::State{.irqfd_bound = true, .irqfd_raised = true, .line_raised = false});
        CHECK(pin_becomes(vm, kPin, true));  // KVM took the trigger
        line.set_level(true);                // asserted again while up: nothing changes
        CHECK(line.state() == IrqfdLevelLine::State{.irqfd_bound = true, .irqfd_raised = true, .line_raised = false});
        line.set_level(false);               // waits for an EOI
        CHECK(pin_asserted(vm, kPin));

        // The guest makes the pin edge-triggered: no EOI will ever lower
        // the irqfd's level, so the next raise takes the irqfd away first.
        program_pin(vm, kPin, false);
        CHECK(vm.ioapic_pin_level_triggered(kPin) == false);
        line.set_level(true);
        CHECK(line.state() == IrqfdLevelLine::State{.irqfd_bound = false, .irqfd_raised = false, .line_raised = true});
        CHECK(pin_asserted(vm, kPin));
        line.set_level(false);  // KVM_IRQ_LINE lowers at once
        CHECK_FALSE(line.state().line_raised);
        CHECK_FALSE(pin_asserted(vm, kPin));

        // Level-triggered again: bound again.
        program_pin(vm, kPin, true);
        line.set_level(true);
        CHECK(line.state().irqfd_bound);
        CHECK(pin_becomes(vm, kPin, true));
    }
    CHECK_FALSE(events.handler);           // unwatched with the line
    CHECK(pin_becomes(vm, kPin, false));   // and the irqfd gone lowers the pin
}

TEST_CASE("irqfd INTx: pins outside the IOAPIC have no trigger mode", "[kvm]") {
    Kvm kvm = Kvm::open();
    Vm vm = Vm::create(kvm);
    CHECK_FALSE(vm.ioapic_pin_level_triggered(24).has_value());
    CHECK(vm.ioapic_pin_level_triggered(16) == false);  // reset state: edge
}
