#pragma once
// What to tell a user whose guest never initialised a virtio device: almost
// always a guest kernel built without the driver. Linux's virtio-pci sets
// ACKNOWLEDGE when it finds the device, the device's driver sets DRIVER when
// it binds, then DRIVER_OK, or FAILED when its probe fails; so the status
// bits the guest ever set tell which piece is missing.

#include <cstdint>
#include <string>
#include <string_view>

#include "virtio/virtio_device.h"

namespace minikvm {

// One warning line for a device whose driver never set DRIVER_OK. `who`
// names it ("virtio-console0 00:01.0"), `kind` says which guest kernel
// option drives it (VirtioDeviceKind::guest_kconfig); `status_seen` is every status bit
// the driver ever set (see VirtioPciLegacy::status_bits_ever_set()), e.g.
//   "virtio-console0 00:01.0 never reached DRIVER_OK: no guest driver
//    touched it: are CONFIG_VIRTIO_PCI (with CONFIG_VIRTIO_PCI_LEGACY) and
//    CONFIG_VIRTIO_CONSOLE enabled in the guest kernel?"
std::string never_driver_ok_warning(std::string_view who, const VirtioDeviceKind& kind, uint8_t status_seen);

}  // namespace minikvm
