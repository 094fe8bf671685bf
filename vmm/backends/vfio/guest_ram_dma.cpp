#include "vmm/backends/vfio/guest_ram_dma.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/core/error.h"

namespace minikvm {

std::optional<std::string> guest_ram_dma_problem(const std::vector<MemoryRegion>& regions,
                                                 const std::vector<IovaRegion>& reserved,
                                                 const std::vector<VfioContainer::IovaRange>& usable) {
    for (const MemoryRegion& region : regions) {
        if (region.size == 0) continue;
        const uint64_t first = region.guest_address;
        const uint64_t last = region.guest_address + region.size - 1;
        for (const IovaRegion& hole : reserved) {
            if (hole.type == "direct-relaxable") continue;
            if (first <= hole.end && hole.start <= last)
                return fmt::format("guest RAM {:#x}-{:#x} overlaps the IOMMU's reserved {} region {:#x}-{:#x}, where "
                                   "the device cannot reach it: give the guest less memory",
                                   first, last, hole.type, hole.start, hole.end);
        }
        bool inside = usable.empty();
        for (const VfioContainer::IovaRange& range : usable) inside = inside || (range.start <= first && last <= range.end);
        if (!inside)
            return fmt::format("guest RAM {:#x}-{:#x} is beyond what this host's IOMMU can map{}: give the guest less "
                               "memory",
                               first, last,
                               usable.empty() ? std::string()
                                              : fmt::format(" (up to {:#x})", usable.back().end));
    }
    return std::nullopt;
}

GuestRamDma::GuestRamDma(VfioContainer& container, const GuestMemory& memory, const std::vector<IovaRegion>& reserved,
                         const std::string& option)
    : container_(container) {
    if (const auto problem = guest_ram_dma_problem(memory.regions(), reserved, container.iova_ranges()))
        fail(ExitCode::BadDevice, "{}: {}", option, *problem);
    try {
        for (const MemoryRegion& region : memory.regions()) {
            if (region.size == 0) continue;
            container_.map_dma(region.guest_address, region.size, memory.host_base() + region.host_offset);
            mapped_.emplace_back(region.guest_address, region.size);
        }
    } catch (...) {
        unmap_all();
        throw;
    }
}

GuestRamDma::~GuestRamDma() { unmap_all(); }

void GuestRamDma::unmap_all() noexcept {
    for (const auto& [iova, size] : mapped_) {
        try {
            container_.unmap_dma(iova, size);
        } catch (const std::exception& error) {
            spdlog::warn("VFIO: unmapping guest RAM {:#x}+{:#x}: {}", iova, size, error.what());
        }
    }
    mapped_.clear();
}

}  // namespace minikvm
