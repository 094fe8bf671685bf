#pragma once
// The split virtqueue as it lies in guest memory (virtio 1.2 section 2.7),
// in the legacy layout the legacy virtio-pci transport uses (2.7.2): the
// driver writes a page frame number and the queue is, from that page on,
//
//   descriptor table  16 bytes x size   {addr u64, len u32, flags u16, next u16}
//   available ring    6 + 2 x size      {flags u16, idx u16, ring[size] u16, used_event u16}
//   padding to the next 4096-byte boundary
//   used ring         6 + 8 x size      {flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16}
//
// Every field is little-endian. Only constants and arithmetic live here; the
// engine that reads and writes the rings is VirtQueue.

#include <cstdint>

namespace minikvm::split_ring {

// Queue sizes are powers of two up to 32768 (2.7).
inline constexpr uint32_t kMaxQueueSize = 32768;
constexpr bool valid_queue_size(uint32_t size) {
    return size != 0 && size <= kMaxQueueSize && (size & (size - 1)) == 0;
}

// The legacy transport's queue address register holds a 4096-byte page number.
inline constexpr unsigned kLegacyPageShift = 12;
inline constexpr uint64_t kLegacyAlign = uint64_t{1} << kLegacyPageShift;

// Descriptor flags (2.7.5).
inline constexpr uint16_t kDescNext = 1;
inline constexpr uint16_t kDescWrite = 2;
inline constexpr uint16_t kDescIndirect = 4;
inline constexpr uint64_t kDescriptorSize = 16;

// Available ring flag: the driver needs no used-buffer interrupt (2.7.7).
inline constexpr uint16_t kAvailNoInterrupt = 1;
// Used ring flag: the device needs no available-buffer notification (2.7.10).
inline constexpr uint16_t kUsedNoNotify = 1;

// Feature bits that change how the ring is operated (the owner negotiates them).
inline constexpr unsigned kFeatureIndirectDesc = 28;  // VIRTIO_RING_F_INDIRECT_DESC
inline constexpr unsigned kFeatureEventIdx = 29;      // VIRTIO_RING_F_EVENT_IDX

// Where each part and field of a legacy queue of `size` entries starts,
// relative to the queue's first byte. Every offset is even, and the used
// ring is page aligned, so each 16-bit field is naturally aligned.
struct LegacyLayout {
    uint64_t descriptors = 0;
    uint64_t descriptors_size = 0;
    uint64_t avail = 0;
    uint64_t avail_size = 0;  // includes used_event
    uint64_t used = 0;
    uint64_t used_size = 0;  // includes avail_event
    uint64_t end = 0;        // one past the last byte the device touches
};

constexpr LegacyLayout legacy_layout(uint32_t size) {
    LegacyLayout layout;
    layout.descriptors_size = kDescriptorSize * size;
    layout.avail = layout.descriptors_size;
    layout.avail_size = 6 + 2 * uint64_t{size};
    layout.used = (layout.avail + layout.avail_size + kLegacyAlign - 1) & ~(kLegacyAlign - 1);
    layout.used_size = 6 + 8 * uint64_t{size};
    layout.end = layout.used + layout.used_size;
    return layout;
}

// Field offsets inside the available and used rings.
inline constexpr uint64_t kRingFlags = 0;
inline constexpr uint64_t kRingIndex = 2;
inline constexpr uint64_t kRingEntries = 4;
inline constexpr uint64_t kAvailEntrySize = 2;
inline constexpr uint64_t kUsedEntrySize = 8;
constexpr uint64_t avail_used_event_offset(uint32_t size) { return kRingEntries + kAvailEntrySize * size; }
constexpr uint64_t used_avail_event_offset(uint32_t size) { return kRingEntries + kUsedEntrySize * size; }

// The event-index test (2.7.7.2, 2.7.10): after an index moved from
// `old_index` to `new_index`, did it pass `event`, i.e. was the entry at
// position `event` among those just added? All in u16, so it stays right
// when the free-running indices wrap from 65535 to 0.
constexpr bool need_event(uint16_t event, uint16_t new_index, uint16_t old_index) {
    return static_cast<uint16_t>(new_index - event - 1) < static_cast<uint16_t>(new_index - old_index);
}

}  // namespace minikvm::split_ring
