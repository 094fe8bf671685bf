#include "vmm/backends/vfio/vfio_container.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "vmm/core/error.h"

namespace minikvm {

VfioContainer VfioContainer::open(const std::string& option, const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) {
        const int error = errno;
        if (error == ENOENT)
            fail(ExitCode::BadDevice, "{}: no {}: this host's kernel has no VFIO loaded (modprobe vfio-pci)", option,
                 path);
        fail(ExitCode::BadDevice, "{}: cannot open {}: {}", option, path, std::strerror(error));
    }
    const int version = ::ioctl(fd.get(), VFIO_GET_API_VERSION);
    if (version != VFIO_API_VERSION)
        fail(ExitCode::BadDevice, "{}: {} speaks VFIO API version {}, minikvm knows {}", option, path, version,
             VFIO_API_VERSION);
    uint32_t type = 0;
    if (::ioctl(fd.get(), VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) > 0) type = VFIO_TYPE1v2_IOMMU;
    else if (::ioctl(fd.get(), VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) > 0) type = VFIO_TYPE1_IOMMU;
    else
        fail(ExitCode::BadDevice, "{}: this host's VFIO offers no type-1 IOMMU (modprobe vfio_iommu_type1)", option);
    return VfioContainer(std::move(fd), type);
}

void VfioContainer::set_iommu() {
    if (iommu_set_) return;
    if (::ioctl(fd_.get(), VFIO_SET_IOMMU, iommu_type_) != 0)
        throw std::system_error(errno, std::generic_category(), "VFIO_SET_IOMMU");
    iommu_set_ = true;
}

void VfioContainer::map_dma(uint64_t iova, uint64_t size, void* host) {
    vfio_iommu_type1_dma_map map{};
    map.argsz = sizeof map;
    map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    map.vaddr = reinterpret_cast<uint64_t>(host);
    map.iova = iova;
    map.size = size;
    if (::ioctl(fd_.get(), VFIO_IOMMU_MAP_DMA, &map) != 0)
        throw std::system_error(errno, std::generic_category(), "VFIO_IOMMU_MAP_DMA");
}

void VfioContainer::unmap_dma(uint64_t iova, uint64_t size) {
    vfio_iommu_type1_dma_unmap unmap{};
    unmap.argsz = sizeof unmap;
    unmap.iova = iova;
    unmap.size = size;
    if (::ioctl(fd_.get(), VFIO_IOMMU_UNMAP_DMA, &unmap) != 0)
        throw std::system_error(errno, std::generic_category(), "VFIO_IOMMU_UNMAP_DMA");
}

std::vector<VfioContainer::IovaRange> VfioContainer::iova_ranges() const {
    // First the size of the answer with its capability chain, then the answer.
    vfio_iommu_type1_info probe{};
    probe.argsz = sizeof probe;
    if (::ioctl(fd_.get(), VFIO_IOMMU_GET_INFO, &probe) != 0 || !(probe.flags & VFIO_IOMMU_INFO_CAPS) ||
        probe.argsz <= sizeof probe)
        return {};
    std::vector<uint8_t> buffer(probe.argsz);
    auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buffer.data());
    info->argsz = probe.argsz;
    if (::ioctl(fd_.get(), VFIO_IOMMU_GET_INFO, info) != 0) return {};
    return parse_iova_ranges(buffer);
}

std::vector<VfioContainer::IovaRange> VfioContainer::parse_iova_ranges(std::span<const uint8_t> buffer) {
    vfio_iommu_type1_info info;
    if (buffer.size() < sizeof info) return {};
    std::memcpy(&info, buffer.data(), sizeof info);
    if (!(info.flags & VFIO_IOMMU_INFO_CAPS)) return {};
    std::vector<IovaRange> ranges;
    // Walk the capability chain, each header checked to lie inside the buffer.
    for (uint64_t offset = info.cap_offset; offset != 0 && offset + sizeof(vfio_info_cap_header) <= buffer.size();) {
        vfio_info_cap_header header;
        std::memcpy(&header, buffer.data() + offset, sizeof header);
        if (header.id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE &&
            offset + sizeof(vfio_iommu_type1_info_cap_iova_range) <= buffer.size()) {
            vfio_iommu_type1_info_cap_iova_range cap;
            std::memcpy(&cap, buffer.data() + offset, sizeof cap);
            const size_t first = offset + sizeof cap;
            for (uint32_t i = 0; i < cap.nr_iovas && first + (i + 1) * sizeof(vfio_iova_range) <= buffer.size(); ++i) {
                vfio_iova_range range;
                std::memcpy(&range, buffer.data() + first + i * sizeof range, sizeof range);
                ranges.push_back({range.start, range.end});
            }
        }
        if (header.next <= offset) break;  // the chain only goes forward
        offset = header.next;
    }
    return ranges;
}

}  // namespace minikvm
