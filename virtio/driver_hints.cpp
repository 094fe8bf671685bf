#include "virtio/driver_hints.h"

#include <fmt/format.h>

#include "virtio/device_status.h"

namespace minikvm {

std::string virtio_type_name(VirtioDeviceType type) {
    switch (type) {
        case VirtioDeviceType::Net: return "net";
        case VirtioDeviceType::Block: return "block";
        case VirtioDeviceType::Console: return "console";
    }
    return fmt::format("type {}", static_cast<unsigned>(type));
}

std::string_view guest_driver_kconfig(VirtioDeviceType type) {
    switch (type) {
        case VirtioDeviceType::Net: return "CONFIG_VIRTIO_NET";
        case VirtioDeviceType::Block: return "CONFIG_VIRTIO_BLK";
        case VirtioDeviceType::Console: return "CONFIG_VIRTIO_CONSOLE";
    }
    return {};
}

std::string never_driver_ok_warning(std::string_view who, VirtioDeviceType type, uint8_t status_seen) {
    namespace ds = device_status;
    const std::string_view kconfig = guest_driver_kconfig(type);
    const std::string driver = kconfig.empty() ? fmt::format("the {} driver", virtio_type_name(type))
                                               : std::string(kconfig);
    std::string why;
    if ((status_seen & (ds::kDriver | ds::kFailed)) != 0) {
        // A driver bound and its probe failed: the option is there.
        why = fmt::format("its guest driver gave up (status bits seen: {}): look in the guest kernel log",
                          ds::names(status_seen));
    } else if ((status_seen & ds::kAcknowledge) != 0) {
        why = fmt::format("the guest found it but no driver took it: is {} enabled in the guest kernel?", driver);
    } else {
        // Newer kernels split the legacy (transitional) virtio-pci support off.
        why = fmt::format("no guest driver touched it: are CONFIG_VIRTIO_PCI (with CONFIG_VIRTIO_PCI_LEGACY) and {} "
                          "enabled in the guest kernel?",
                          driver);
    }
    return fmt::format("{} never reached DRIVER_OK: {}", who, why);
}

}  // namespace minikvm
