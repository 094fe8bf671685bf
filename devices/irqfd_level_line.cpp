#include "devices/irqfd_level_line.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <spdlog/spdlog.h>

#include "vmm/core/event_sources.h"
#include "vmm/core/vm.h"

namespace minikvm {

IrqfdLevelLine::IrqfdLevelLine(const Vm* vm, EventSources& events, uint32_t gsi)
    : vm_(vm),
      events_(events),
      gsi_(gsi),
      trigger_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      resample_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!trigger_ || !resample_) throw std::system_error(errno, std::generic_category(), "eventfd");
    // Watched from the start, so binding (on a vCPU thread, perhaps) never
    // has to touch the event loop; it stays silent until KVM has the fd.
    events_.watch(resample_.get(), EventSources::kReadable, [this](uint32_t) { resampled(); });
}

IrqfdLevelLine::~IrqfdLevelLine() {
    events_.unwatch(resample_.get());
    std::lock_guard lock(mutex_);
    if (vm_ == nullptr) return;
    try {
        if (bound_) vm_->remove_irqfd(trigger_.get(), gsi_);
        if (line_raised_) vm_->set_irq_line(gsi_, false);
    } catch (const std::system_error& failure) {
        spdlog::warn("INTx on GSI {}: taking the line down: {}", gsi_, failure.what());
    }
}

IrqfdLevelLine::State IrqfdLevelLine::state() const {
    std::lock_guard lock(mutex_);
    return {.irqfd_bound = bound_, .irqfd_raised = irqfd_raised_, .line_raised = line_raised_};
}

void IrqfdLevelLine::set_level(bool asserted) {
    std::lock_guard lock(mutex_);
    const bool was_asserted = level_;
    level_ = asserted;
    if (asserted) {
        // Asserted again while up, one way or the other: nothing changes,
        // so the pin's mode (a KVM_GET_IRQCHIP copy) is not read. A line
        // raised anew reads it, even with the irqfd still up waiting for an
        // EOI: the guest may have made the pin edge-triggered meanwhile.
        if (was_asserted && (irqfd_raised_ || line_raised_)) return;
        assert_locked();
        return;
    }
    // Through the irqfd, lowering waits for the guest's EOI (see the header).
    if (line_raised_) {
        vm_->set_irq_line(gsi_, false);
        line_raised_ = false;
    }
}

void IrqfdLevelLine::assert_locked() {
    if (use_irqfd_locked()) {
        if (line_raised_) {  // the pin was edge-triggered until now
            vm_->set_irq_line(gsi_, false);
            line_raised_ = false;
        }
        if (!irqfd_raised_) trigger_locked();
    } else if (!line_raised_) {
        vm_->set_irq_line(gsi_, true);
        line_raised_ = true;
    }
}

bool IrqfdLevelLine::use_irqfd_locked() {
    if (refused_) return false;
    if (vm_ == nullptr) return bound_ = true;
    if (vm_->ioapic_pin_level_triggered(gsi_).value_or(false)) {
        if (bound_) return true;
        try {
            vm_->add_level_irqfd(trigger_.get(), resample_.get(), gsi_);
            bound_ = true;
            // Once per line at info (INTx is the exception: drivers use MSI-X).
            if (!logged_binding_)
                spdlog::info("INTx on GSI {} goes through a resampling irqfd (the guest made its pin level-triggered)",
                             gsi_);
            else
                spdlog::debug("INTx on GSI {}: the pin is level-triggered again: through the irqfd", gsi_);
            logged_binding_ = true;
        } catch (const std::system_error& failure) {
            spdlog::warn("INTx on GSI {}: KVM refused a resampling irqfd ({}); the line goes through KVM_IRQ_LINE",
                         gsi_, failure.what());
            refused_ = true;
        }
        return bound_;
    }
    // Edge-triggered: no EOI would ever lower the irqfd's level. Taking the
    // irqfd away lowers it, so KVM_IRQ_LINE starts from a low line.
    if (bound_) {
        try {
            vm_->remove_irqfd(trigger_.get(), gsi_);
        } catch (const std::system_error& failure) {
            spdlog::warn("INTx on GSI {}: removing its irqfd: {}", gsi_, failure.what());
        }
        bound_ = false;
        irqfd_raised_ = false;
        spdlog::debug("INTx on GSI {}: the pin is edge-triggered now: through KVM_IRQ_LINE", gsi_);
    }
    return false;
}

void IrqfdLevelLine::trigger_locked() {
    const uint64_t one = 1;
    // An eventfd write fails only when the counter would overflow, which
    // KVM's reads prevent; the line is up as far as this is concerned.
    if (::write(trigger_.get(), &one, sizeof one) != sizeof one)
        spdlog::warn("INTx on GSI {}: writing its irqfd failed", gsi_);
    irqfd_raised_ = true;
}

void IrqfdLevelLine::resampled() {
    uint64_t count = 0;
    if (::read(resample_.get(), &count, sizeof count) != sizeof count) return;  // nothing (spurious wake-up)
    std::lock_guard lock(mutex_);
    if (!bound_) return;
    // KVM lowered the line at the EOI; still asserted means still pending.
    irqfd_raised_ = false;
    if (level_) assert_locked();
}

}  // namespace minikvm
