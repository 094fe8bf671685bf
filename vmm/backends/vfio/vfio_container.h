#pragma once
// A VFIO container (/dev/vfio/vfio): one IOMMU address space that every
// assigned device's group joins, so one set of DMA mappings serves them
// all. minikvm maps guest RAM into it with IOVA = guest-physical address.
// The type-1 IOMMU, v2 where the kernel offers it; the IOMMU type is set
// when the first group joins (the kernel wants a group first).
//
// Errors a person can fix (no VFIO in the kernel, no permission) are
// VmmError(BadDevice) with one line; a DMA map the kernel refuses is a
// std::system_error (the host's problem: memory, IOMMU limits).

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/core/unique_fd.h"

namespace minikvm {

class VfioContainer {
public:
    struct IovaRange {
        uint64_t start;
        uint64_t end;  // inclusive
    };

    // `option` prefixes error lines ("--vfio-pci 04:00.0").
    static VfioContainer open(const std::string& option, const std::string& path = "/dev/vfio/vfio");

    int fd() const { return fd_.get(); }
    // VFIO_TYPE1v2_IOMMU or VFIO_TYPE1_IOMMU.
    uint32_t iommu_type() const { return iommu_type_; }
    bool iommu_set() const { return iommu_set_; }
    // VFIO_SET_IOMMU; call once a group has joined (VfioGroup::attach does).
    void set_iommu();

    // Device-readable and -writable mapping of [host, host + size) at `iova`.
    void map_dma(uint64_t iova, uint64_t size, void* host);
    void unmap_dma(uint64_t iova, uint64_t size);
    // What the IOMMU can map, from VFIO_IOMMU_GET_INFO; empty when the kernel
    // does not say (then the group's reserved regions are all there is).
    std::vector<IovaRange> iova_ranges() const;
    // The IOVA-range capability found in VFIO_IOMMU_GET_INFO's answer `info`
    // (header and capability chain); every header and range is checked to
    // lie inside `info`, and a chain that does not go forward ends the walk.
    static std::vector<IovaRange> parse_iova_ranges(std::span<const uint8_t> info);

private:
    VfioContainer(UniqueFd fd, uint32_t type) : fd_(std::move(fd)), iommu_type_(type) {}

    UniqueFd fd_;
    uint32_t iommu_type_;
    bool iommu_set_ = false;
};

}  // namespace minikvm
