#pragma once
// What the host's sysfs says about a PCI function to be assigned with
// --vfio-pci, checked before anything is opened: that it exists, is bound
// to vfio-pci, has an IOMMU group (the IOMMU is on), and that the group is
// viable (every other function in it bound to vfio-pci or a driver VFIO
// accepts, or to none). Each problem a person can fix is a VmmError with
// ExitCode::BadDevice and one line saying how: the commands that bind the
// device, the kernel parameter that turns the IOMMU on, the devices that
// make the group unusable.
//
// Also read: the group's reserved IOVA regions (the MSI window and the
// like), which guest RAM must not be DMA-mapped over.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/backends/vfio/host_pci_address.h"

namespace minikvm {

struct IovaRegion {
    uint64_t start = 0;
    uint64_t end = 0;  // inclusive, as sysfs prints it
    std::string type;  // "msi", "direct", "reserved", "direct-relaxable"
    bool operator==(const IovaRegion&) const = default;
};

// sysfs's iommu_group/reserved_regions: one "START END TYPE" line per
// region, hex with 0x. Lines that do not parse are skipped.
std::vector<IovaRegion> parse_reserved_regions(std::string_view text);

struct HostPciDevice {
    HostPciAddress address;
    std::string sysfs_path;  // .../bus/pci/devices/0000:04:00.0
    uint16_t vendor_id = 0;
    uint16_t device_id = 0;
    unsigned iommu_group = 0;
    std::vector<IovaRegion> reserved_regions;

    // "/dev/vfio/12"
    std::string group_path() const;
};

// Drivers a function may be bound to and still leave its group viable.
bool vfio_viable_driver(std::string_view driver);

// `sysfs_root` is "/sys" (tests give a directory of their own). `option`
// names what asked, for the messages ("--vfio-pci 04:00.0").
HostPciDevice probe_host_pci_device(const std::string& sysfs_root, const HostPciAddress& address,
                                    const std::string& option);

}  // namespace minikvm
