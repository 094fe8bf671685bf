#include "vmm/core/guest_memory.h"

#include <cstring>

namespace minikvm {

std::vector<MemoryRegion> GuestMemory::layout(uint64_t size) {
    if (size <= kMmioHoleStart) return {{0, size, 0}};
    return {{0, kMmioHoleStart, 0}, {kMmioHoleEnd, size - kMmioHoleStart, kMmioHoleStart}};
}

GuestMemory GuestMemory::allocate(uint64_t size) {
    return GuestMemory(HostMapping::anonymous(size), layout(size));
}

uint64_t GuestMemory::low_ram_end() const { return regions_.empty() ? 0 : regions_.front().size; }

std::optional<std::span<uint8_t>> GuestMemory::span(uint64_t address, uint64_t length) const {
    for (const MemoryRegion& region : regions_) {
        if (address < region.guest_address) continue;
        uint64_t offset = address - region.guest_address;
        // Written so nothing can overflow: offset and length are each checked
        // against the region size before they are combined.
        if (offset > region.size || length > region.size - offset) continue;
        return std::span<uint8_t>(mapping_.data() + region.host_offset + offset, length);
    }
    return std::nullopt;
}

bool GuestMemory::write(uint64_t address, std::span<const uint8_t> data) const {
    auto target = span(address, data.size());
    if (!target) return false;
    if (!data.empty()) std::memcpy(target->data(), data.data(), data.size());
    return true;
}

bool GuestMemory::read(uint64_t address, std::span<uint8_t> data) const {
    auto source = span(address, data.size());
    if (!source) return false;
    if (!data.empty()) std::memcpy(data.data(), source->data(), data.size());
    return true;
}

}  // namespace minikvm
