#include "virtio/driver_hints.h"

#include <fmt/format.h>

#include "virtio/device_status.h"

namespace minikvm {

std::string never_driver_ok_warning(std::string_view who, const VirtioDeviceKind& kind, uint8_t status_seen) {
    namespace ds = device_status;
    const std::string driver = kind.guest_kconfig.empty() ? fmt::format("the virtio {} driver", kind.name)
                                                          : std::string(kind.guest_kconfig);
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
