#pragma once
// A VFIO group (/dev/vfio/N): the unit the IOMMU isolates, holding the
// device to assign (and whatever shares its IOMMU group). It must be
// viable -- every device in it bound to vfio-pci or to nothing -- before it
// can join a container; then the device's fd comes from it.

#include <string>

#include "vmm/backends/vfio/host_pci_device.h"
#include "vmm/backends/vfio/vfio_container.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class VfioGroup {
public:
    // Opens the group of `device`. VmmError(BadDevice) with one line when the
    // node is missing or not accessible (who may open it) or the group is not
    // viable. `option` prefixes the lines.
    static VfioGroup open(const HostPciDevice& device, const std::string& option,
                          const std::string& dev_root = "/dev/vfio");

    unsigned number() const { return number_; }
    // Joins `container` (VFIO_GROUP_SET_CONTAINER), then sets the
    // container's IOMMU type if this is its first group.
    void attach(VfioContainer& container);
    // The device's fd (VFIO_GROUP_GET_DEVICE_FD); needs attach() first.
    UniqueFd device_fd(const std::string& name) const;

private:
    VfioGroup(UniqueFd fd, unsigned number, std::string option)
        : fd_(std::move(fd)), number_(number), option_(std::move(option)) {}

    UniqueFd fd_;
    unsigned number_;
    std::string option_;
};

}  // namespace minikvm
