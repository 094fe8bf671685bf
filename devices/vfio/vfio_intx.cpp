#include "devices/vfio/vfio_intx.h"

#include <linux/vfio.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <spdlog/spdlog.h>

#include "vmm/core/vm.h"

namespace minikvm {

VfioIntx::VfioIntx(VfioDeviceIo& device, const Vm* vm, uint32_t gsi)
    : device_(device),
      vm_(vm),
      gsi_(gsi),
      trigger_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      resample_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!trigger_ || !resample_) throw std::system_error(errno, std::generic_category(), "eventfd");
}

VfioIntx::~VfioIntx() { disable(); }

bool VfioIntx::enable() {
    if (enabled_ || vm_ == nullptr) return enabled_;
    const int32_t trigger = trigger_.get(), resample = resample_.get();
    if (!device_.set_irq_eventfds(VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER, 0, {&trigger, 1})) {
        spdlog::error("{}: VFIO refused the INTx eventfd: {}; the device's INTx does not reach the guest",
                      device_.name(), std::strerror(errno));
        return false;
    }
    if (!device_.set_irq_eventfds(VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK, 0, {&resample, 1})) {
        spdlog::error("{}: VFIO refused the INTx unmask eventfd: {}", device_.name(), std::strerror(errno));
        device_.disable_irq(VFIO_PCI_INTX_IRQ_INDEX);
        return false;
    }
    try {
        vm_->add_level_irqfd(trigger, resample, gsi_);
    } catch (const std::system_error& failure) {
        spdlog::error("{}: KVM refused the INTx irqfd on GSI {}: {}", device_.name(), gsi_, failure.what());
        device_.disable_irq(VFIO_PCI_INTX_IRQ_INDEX);
        return false;
    }
    enabled_ = true;
    return true;
}

void VfioIntx::disable() {
    if (!enabled_) return;
    enabled_ = false;
    try {
        vm_->remove_irqfd(trigger_.get(), gsi_);  // de-asserts the line if it was up
    } catch (const std::system_error& failure) {
        spdlog::warn("{}: removing the INTx irqfd on GSI {}: {}", device_.name(), gsi_, failure.what());
    }
    device_.disable_irq(VFIO_PCI_INTX_IRQ_INDEX);
}

}  // namespace minikvm
