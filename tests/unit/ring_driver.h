#pragma once
// The driver's half of a legacy split ring, for tests: lays out and fills
// the rings in guest RAM the way a guest's virtio_ring does, and reads back
// what the device wrote.

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "virtio/split_ring.h"
#include "vmm/core/guest_memory.h"

namespace test_helpers {

namespace sr = minikvm::split_ring;

inline void put_le(const minikvm::GuestMemory& memory, uint64_t address, uint64_t value, size_t bytes) {
    uint8_t raw[8];
    for (size_t i = 0; i < bytes; ++i) raw[i] = static_cast<uint8_t>(value >> (8 * i));
    REQUIRE(memory.write(address, std::span<const uint8_t>(raw, bytes)));
}

inline uint64_t get_le(const minikvm::GuestMemory& memory, uint64_t address, size_t bytes) {
    uint8_t raw[8] = {};
    REQUIRE(memory.read(address, std::span<uint8_t>(raw, bytes)));
    uint64_t value = 0;
    for (size_t i = bytes; i-- > 0;) value = (value << 8) | raw[i];
    return value;
}

// Writes a descriptor {addr, len, flags, next} at `address` (a ring slot or
// an indirect table entry).
inline void put_descriptor(const minikvm::GuestMemory& memory, uint64_t address, uint64_t addr, uint32_t len,
                           uint16_t flags, uint16_t next) {
    put_le(memory, address, addr, 8);
    put_le(memory, address + 8, len, 4);
    put_le(memory, address + 12, flags, 2);
    put_le(memory, address + 14, next, 2);
}

// The driver's half of one legacy ring (guest RAM from mmap is already zero,
// as a driver leaves a fresh ring).
struct RingDriver {
    const minikvm::GuestMemory& memory;
    uint32_t pfn;
    uint32_t size;
    uint64_t base = uint64_t{pfn} << sr::kLegacyPageShift;
    sr::LegacyLayout layout = sr::legacy_layout(size);
    uint16_t avail_idx = 0;

    void descriptor(uint32_t index, uint64_t addr, uint32_t len, uint16_t flags = 0, uint16_t next = 0) const {
        put_descriptor(memory, base + layout.descriptors + 16 * uint64_t{index}, addr, len, flags, next);
    }
    // Puts `head` in the next available slot, then publishes it.
    void offer(uint16_t head) {
        put_le(memory, base + layout.avail + sr::kRingEntries + 2 * (avail_idx % size), head, 2);
        set_avail_index(static_cast<uint16_t>(avail_idx + 1));
    }
    void set_avail_index(uint16_t value) {
        avail_idx = value;
        put_le(memory, base + layout.avail + sr::kRingIndex, value, 2);
    }
    void set_avail_flags(uint16_t flags) const { put_le(memory, base + layout.avail + sr::kRingFlags, flags, 2); }
    void set_used_event(uint16_t value) const {
        put_le(memory, base + layout.avail + sr::avail_used_event_offset(size), value, 2);
    }
    uint16_t used_flags() const {
        return static_cast<uint16_t>(get_le(memory, base + layout.used + sr::kRingFlags, 2));
    }
    uint16_t used_index() const {
        return static_cast<uint16_t>(get_le(memory, base + layout.used + sr::kRingIndex, 2));
    }
    uint16_t avail_event() const {
        return static_cast<uint16_t>(get_le(memory, base + layout.used + sr::used_avail_event_offset(size), 2));
    }
    // {id, len} of the used element at free-running position `position`.
    std::pair<uint32_t, uint32_t> used_element(uint16_t position) const {
        const uint64_t slot = base + layout.used + sr::kRingEntries + 8 * uint64_t{position % size};
        return {static_cast<uint32_t>(get_le(memory, slot, 4)), static_cast<uint32_t>(get_le(memory, slot + 4, 4))};
    }
};

}  // namespace test_helpers
