#pragma once
// Guest RAM mapped for an assigned device's DMA: every RAM region in the
// VFIO container with IOVA = guest-physical address, so the guest's driver
// programs the device with the addresses it knows. Unmapped when this goes.
//
// Before mapping, the layout is checked against what the IOMMU can do: each
// region inside the usable IOVA ranges the container reports, and clear of
// the group's reserved regions (the MSI window, firmware-reserved ranges;
// "direct-relaxable" ones, which the kernel lets assigned devices
// override, do not count). A conflict is a person's problem -- less RAM, or
// another host -- and one line, exit 6.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vmm/backends/vfio/host_pci_device.h"
#include "vmm/backends/vfio/vfio_container.h"
#include "vmm/core/guest_memory.h"

namespace minikvm {

// Why `regions` cannot be mapped 1:1, or nullopt. `usable` empty: the
// kernel did not say, every address is usable.
std::optional<std::string> guest_ram_dma_problem(const std::vector<MemoryRegion>& regions,
                                                 const std::vector<IovaRegion>& reserved,
                                                 const std::vector<VfioContainer::IovaRange>& usable);

class GuestRamDma {
public:
    // Maps all of `memory`. VmmError(BadDevice) with `option` in front for a
    // layout problem; std::system_error when the kernel refuses a mapping
    // (what was mapped is unmapped again).
    GuestRamDma(VfioContainer& container, const GuestMemory& memory, const std::vector<IovaRegion>& reserved,
                const std::string& option);
    ~GuestRamDma();

    GuestRamDma(const GuestRamDma&) = delete;
    GuestRamDma& operator=(const GuestRamDma&) = delete;

    // (IOVA, size) of every mapping, in guest-physical order.
    const std::vector<std::pair<uint64_t, uint64_t>>& mappings() const { return mapped_; }

private:
    void unmap_all() noexcept;

    VfioContainer& container_;
    std::vector<std::pair<uint64_t, uint64_t>> mapped_;
};

}  // namespace minikvm
