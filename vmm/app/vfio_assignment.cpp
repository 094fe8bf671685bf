#include "vmm/app/vfio_assignment.h"

#include <algorithm>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "vmm/backends/vfio/dma_memlock.h"
#include "vmm/core/error.h"

namespace minikvm {

std::vector<HostPciDevice> probe_assigned_devices(const std::vector<MachineConfig::AssignedDevice>& devices) {
    std::vector<HostPciDevice> hosts;
    for (const auto& wanted : devices) hosts.push_back(probe_host_pci_device("/sys", wanted.address, wanted.option));
    return hosts;
}

VfioAssignment::VfioAssignment(const std::vector<MachineConfig::AssignedDevice>& devices,
                               std::vector<HostPciDevice> hosts, const GuestMemory& memory, VfioPciDevice::Kvm kvm,
                               PciHostBridge& bridge, bool trace) {
    if (devices.empty()) return;
    check_memlock_for_dma(memory.size(), devices.front().option);

    container_.emplace(VfioContainer::open(devices.front().option));
    std::vector<unsigned> group_numbers;
    for (size_t i = 0; i < devices.size(); ++i) {
        // Two functions of one IOMMU group share the group's fd.
        if (std::find(group_numbers.begin(), group_numbers.end(), hosts[i].iommu_group) != group_numbers.end())
            continue;
        VfioGroup& group = groups_.emplace_back(VfioGroup::open(hosts[i], devices[i].option));
        group.attach(*container_);
        group_numbers.push_back(hosts[i].iommu_group);
    }
    std::vector<IovaRegion> reserved;
    for (const HostPciDevice& host : hosts)
        reserved.insert(reserved.end(), host.reserved_regions.begin(), host.reserved_regions.end());
    dma_.emplace(*container_, memory, reserved, devices.front().option);

    for (size_t i = 0; i < devices.size(); ++i) {
        const std::string name = hosts[i].address.to_string();
        const size_t group = static_cast<size_t>(
            std::find(group_numbers.begin(), group_numbers.end(), hosts[i].iommu_group) - group_numbers.begin());
        Assigned& assigned = assigned_.emplace_back();
        assigned.host = hosts[i];
        assigned.device = std::make_unique<VfioDevice>(groups_[group].device_fd(name), name);
        if (!assigned.device->is_pci())
            fail(ExitCode::BadDevice, "{}: VFIO does not present {} as a PCI device", devices[i].option, name);
        assigned.model = std::make_unique<VfioPciDevice>(*assigned.device, kvm, "vfio-" + name);
        assigned.model->set_trace(trace);
        PciBdf address;
        try {
            address = bridge.register_device(*assigned.model);
        } catch (const std::runtime_error& error) {
            // A BAR bigger than what is left of the windows, mostly.
            fail(ExitCode::BadDevice, "{}: {}", devices[i].option, error.what());
        }
        spdlog::info("{} ({:04x}:{:04x}, IOMMU group {}) assigned at guest PCI {}", name, hosts[i].vendor_id,
                     hosts[i].device_id, hosts[i].iommu_group, address.to_string());
    }
}

VfioAssignment::~VfioAssignment() {
    // Models before the DMA mappings they might still be using.
    for (Assigned& assigned : assigned_) assigned.model.reset();
}

std::string VfioAssignment::state_report() const {
    std::string out;
    for (const Assigned& assigned : assigned_) out += assigned.model->state_report();
    return out;
}

}  // namespace minikvm
