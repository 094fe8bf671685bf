#pragma once
// Guest RAM and the only place that turns guest-physical addresses into host
// pointers. Every translation is bounds- and overflow-checked: a range that is
// not entirely inside one RAM region yields nothing, never a wild pointer.

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "vmm/core/host_mapping.h"

namespace minikvm {

struct MemoryRegion {
    uint64_t guest_address;
    uint64_t size;
    uint64_t host_offset;  // offset into the one host mapping
};

class GuestMemory {
public:
    // The 32-bit PCI/MMIO hole: RAM that would overlap it is moved above 4 GiB.
    static constexpr uint64_t kMmioHoleStart = 0xC000'0000;
    static constexpr uint64_t kMmioHoleEnd = 0x1'0000'0000;

    // Lay out `size` bytes of RAM (one mapping, split around the hole) and map it.
    static GuestMemory allocate(uint64_t size);
    // Layout only, for code that needs the regions without host memory.
    static std::vector<MemoryRegion> layout(uint64_t size);

    const std::vector<MemoryRegion>& regions() const { return regions_; }
    uint64_t size() const { return mapping_.size(); }
    uint8_t* host_base() const { return mapping_.data(); }  // for KVM memory slots only
    // End of the RAM region that starts at 0 (where boot data must live).
    uint64_t low_ram_end() const;

    // Host view of [address, address + length), or nullopt if any byte is outside RAM.
    std::optional<std::span<uint8_t>> span(uint64_t address, uint64_t length) const;
    bool contains(uint64_t address, uint64_t length) const { return span(address, length).has_value(); }

    // Copy helpers: return false (and copy nothing) when the range is not RAM.
    bool write(uint64_t address, std::span<const uint8_t> data) const;
    bool read(uint64_t address, std::span<uint8_t> data) const;

    template <typename T>
    bool write_object(uint64_t address, const T& value) const {
        return write(address, std::span(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
    }

private:
    GuestMemory(HostMapping mapping, std::vector<MemoryRegion> regions)
        : mapping_(std::move(mapping)), regions_(std::move(regions)) {}

    HostMapping mapping_;
    std::vector<MemoryRegion> regions_;
};

}  // namespace minikvm
