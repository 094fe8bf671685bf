#pragma once
// An assigned device's INTx, all in the kernel: VFIO signals the trigger
// eventfd when the device asserts its pin (and masks it on the host); KVM
// asserts the guest's GSI from it as a level irqfd. On the guest's EOI KVM
// de-asserts the line and signals the resample eventfd, which VFIO takes as
// "unmask": if the device still asserts, the trigger fires again. No exit
// to minikvm on either side.
//
// Off while MSI or MSI-X is on (VFIO allows one interrupt type at a time)
// and back on after.

#include <cstdint>
#include <string>

#include "vmm/backends/vfio/vfio_device.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class Vm;

class VfioIntx {
public:
    // `vm` null: never wired (unit tests without KVM). Creates the eventfds;
    // wires nothing yet.
    VfioIntx(VfioDeviceIo& device, const Vm* vm, uint32_t gsi);
    ~VfioIntx();

    VfioIntx(const VfioIntx&) = delete;
    VfioIntx& operator=(const VfioIntx&) = delete;

    // Wires the pin to the GSI; false (logged) when VFIO or KVM refuse.
    bool enable();
    void disable();
    bool enabled() const { return enabled_; }
    uint32_t gsi() const { return gsi_; }

private:
    VfioDeviceIo& device_;
    const Vm* const vm_;
    const uint32_t gsi_;
    UniqueFd trigger_;
    UniqueFd resample_;
    bool enabled_ = false;
};

}  // namespace minikvm
