#pragma once
// Every --vfio-pci device of a machine, from the host's sysfs to a PCI
// function on the guest's bus: checks (the device bound to vfio-pci, a
// viable IOMMU group, the memlock limit), one VFIO container for all of
// them, their groups, guest RAM mapped for DMA (IOVA = guest-physical),
// and a VfioPciDevice model each, registered with the host bridge. Every
// problem a person can fix is a VmmError(BadDevice) with one line, raised
// before the guest starts.
//
// Destruction order matters and is member order: the device models first
// (interrupts off, bus mastering off, reset), then the DMA mappings, then
// the devices' fds, groups and container.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "devices/pci_host_bridge.h"
#include "devices/vfio/vfio_pci_device.h"
#include "vmm/app/machine_config.h"
#include "vmm/backends/vfio/guest_ram_dma.h"
#include "vmm/backends/vfio/host_pci_device.h"
#include "vmm/backends/vfio/vfio_container.h"
#include "vmm/backends/vfio/vfio_device.h"
#include "vmm/backends/vfio/vfio_group.h"
#include "vmm/core/guest_memory.h"

namespace minikvm {

// What sysfs says about every --vfio-pci device, checked before anything
// else is set up (KVM, RAM), so a person's mistake is the first line out.
std::vector<HostPciDevice> probe_assigned_devices(const std::vector<MachineConfig::AssignedDevice>& devices);

class VfioAssignment {
public:
    // `hosts` from probe_assigned_devices(devices).
    VfioAssignment(const std::vector<MachineConfig::AssignedDevice>& devices, std::vector<HostPciDevice> hosts,
                   const GuestMemory& memory, VfioPciDevice::Kvm kvm, PciHostBridge& bridge, bool trace);
    ~VfioAssignment();

    VfioAssignment(const VfioAssignment&) = delete;
    VfioAssignment& operator=(const VfioAssignment&) = delete;

    // The SIGUSR1 dump of every assigned device.
    std::string state_report() const;

private:
    struct Assigned {
        HostPciDevice host;
        std::unique_ptr<VfioDevice> device;
        std::unique_ptr<VfioPciDevice> model;  // after `device`: goes first
    };

    std::optional<VfioContainer> container_;
    std::vector<VfioGroup> groups_;
    std::optional<GuestRamDma> dma_;
    std::vector<Assigned> assigned_;
};

}  // namespace minikvm
