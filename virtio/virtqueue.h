#pragma once
// The device side of one split virtqueue (virtio 1.2 section 2.7) in the
// legacy layout: takes chains the driver made available, validates every
// ring rule, and returns used buffers.
//
// The guest writes the rings concurrently and may be hostile. So every guest
// field is fetched once into a local and validated there; all guest memory is
// reached through GuestMemory; and a broken ring rule never aborts and never
// reaches outside guest RAM: the queue marks itself broken, logs one line
// naming the rule, and pops nothing more until reset().
//
// Errors come in three tiers, and only the last is the queue's business:
//   1. a malformed request inside a valid chain: the device completes it
//      with its own error status (push(head, 0) when it wrote nothing);
//   2. semantic errors (bad configuration values...): device status;
//   3. a broken ring rule: handled here. The owner sees broken() after
//      pop() returns nothing, and can set its own NEEDS_RESET/failed state.
//
// Not thread-safe: the owning device serializes its calls (the transport's
// configure/reset and the device's pop/push). The one concurrent party is
// the guest, which the fences below order against. The accessors below are
// for diagnostics too, under the same serialization.
//
// Tracing. With VirtQueueOptions::trace pointing at a flag that is true,
// configure(), pop(), push() and suppressed interrupts each log one info
// line, "trace <name> pop head=3 bufs=[0x12340000+512 r, 0x12350000+4096 w]";
// while it is false they cost one relaxed load and a branch. The flag is the
// owner's (the transport's), so the owner can flip it from any thread.

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "virtio/descriptor_chain.h"
#include "vmm/core/guest_memory.h"

namespace minikvm {

struct VirtQueueOptions {
    // Reject chains with a device-readable buffer after a device-writable one
    // (a driver MUST NOT make them, 2.7.4.2). A device that treats the two
    // lists separately anyway may turn this off to be lenient.
    bool require_readable_before_writable = true;
    // Trace switch (see above); null: never trace. Must outlive the queue.
    const std::atomic<bool>* trace = nullptr;
};

// Which ring rule broke a queue (None while it works).
enum class VirtQueueError {
    None,
    BadQueueSize,            // 2.7: not a power of two in 1..32768
    RingOutsideRam,          // 2.7.2: the legacy ring at the PFN is not all RAM
    AvailIndexBackwards,     // 2.7.6.1: the driver never decrements idx
    AvailIndexTooFar,        // 2.7.6: more than `size` entries ahead of the device
    HeadOutOfRange,          // 2.7.5: a head indexes the table of `size` entries
    NextOutOfRange,          // 2.7.5: so does every `next`
    ChainLoop,               // 2.7.5.2: more descriptors than the table holds
    ChainTooLong,            // 2.7.5.2: total length of 2^32 bytes or more
    BufferOutsideRam,        // 2.7.5: addr..addr+len-1 must be guest RAM
    ReadableAfterWritable,   // 2.7.4.2
    IndirectNotNegotiated,   // 2.7.5.3.1
    IndirectWithNext,        // 2.7.5.3.1
    IndirectNested,          // 2.7.5.3.1
    IndirectBadLength,       // 2.7.5.3: a table of len / 16 descriptors, len > 0
    IndirectTableOutsideRam, // 2.7.5.3
    IndirectNextOutOfRange,  // 2.7.5.3: next indexes the indirect table
    IndirectLoop,            // 2.7.5.2
    IndirectChainTooLong,    // 2.7.5.3.1: no chain longer than the queue size
    TooManyInFlight,         // 2.7.13.1: each chain takes a free descriptor, so
                             // at most `size` are ever in flight
};

class VirtQueue {
public:
    // `name` prefixes the log line ("virtio-blk0 q0").
    VirtQueue(const GuestMemory& memory, std::string name, VirtQueueOptions options = {});

    // Ring features the owner negotiated; only VIRTIO_RING_F_INDIRECT_DESC
    // (bit 28) and VIRTIO_RING_F_EVENT_IDX (bit 29) matter here. reset()
    // keeps them: they belong to the device, not to the queue's address.
    void set_features(uint64_t negotiated_features);
    bool event_idx() const { return event_idx_; }
    bool indirect_descriptors() const { return indirect_descriptors_; }

    // The driver wrote `pfn` to the queue address register; `size` is the
    // size the device offered (the legacy driver cannot change it). Returns
    // false, with the queue broken, if the size is invalid or any byte of the
    // ring is not guest RAM. A legacy driver writes PFN 0 to release a queue:
    // the transport calls reset() for that instead.
    bool configure(uint32_t pfn, uint32_t size);
    // Forget the ring, the indices and any broken state (device reset).
    void reset();

    bool ready() const { return ready_; }
    uint32_t size() const { return size_; }
    uint32_t pfn() const { return pfn_; }
    uint64_t guest_address() const { return guest_address_; }

    // The next validated chain, or nothing: the ring is empty, the queue is
    // not configured, or a ring rule is broken (see broken()).
    std::optional<DescriptorChain> pop();
    // Whether pop() would find a chain (validates the available index).
    bool has_available();
    // Return a popped chain: writes the used element, then (release fence)
    // the used index. Returns false, writing nothing, when the queue is not
    // running, `head` is out of range, or nothing is in flight: a device bug,
    // logged, not the guest's.
    bool push(uint16_t head, uint32_t written_length);
    // Several push()es published by one used-index update, so the driver
    // sees all of them or none: the buffers of one merged receive packet
    // (virtio 1.2 5.1.6.4) must not show up one by one. Cheaper per chain
    // too. Returns false, writing nothing, under push()'s conditions for
    // any element or when more are given than are in flight.
    struct UsedElement {
        uint16_t head;
        uint32_t written_length;
    };
    bool push_batch(std::span<const UsedElement> elements);
    // After one or more push() calls: does the driver want an interrupt?
    // With EVENT_IDX, true when the used index passed used_event since the
    // last call; without, unless the driver set VRING_AVAIL_F_NO_INTERRUPT.
    bool needs_interrupt();

    // Available-buffer notifications (the driver's kicks). disable: set
    // VRING_USED_F_NO_NOTIFY, or with EVENT_IDX stop moving avail_event.
    // enable: clear the flag, or with EVENT_IDX ask for a kick on the next
    // buffer; returns true if buffers are already available, so the device
    // processes them rather than wait for a kick that may never come.
    void disable_notifications();
    bool enable_notifications();
    bool notifications_enabled() const { return notifications_enabled_; }

    bool broken() const { return error_ != VirtQueueError::None; }
    VirtQueueError error() const { return error_; }
    // "virtio 1.2 <clause>: what was seen", empty while not broken.
    const std::string& broken_reason() const { return reason_; }
    // Ring-rule violations since construction (reset() does not clear it).
    uint64_t error_count() const { return error_count_; }

    // Free-running indices: next available entry to take, next used entry.
    uint16_t next_avail_index() const { return next_avail_; }
    uint16_t used_index() const { return used_idx_; }
    uint32_t in_flight() const { return in_flight_; }
    // The driver's available index as the queue last read it (what pop()
    // and has_available() acted on; ahead of next_avail_index() when chains
    // are waiting).
    uint16_t last_seen_avail_index() const { return last_seen_avail_; }

    // The ring's shared header fields as they are in guest memory now, read
    // once each without validation: what the driver sees and wrote, for a
    // state dump. nullopt while the queue is not ready().
    struct GuestRingFields {
        uint16_t avail_flags = 0;  // VRING_AVAIL_F_NO_INTERRUPT is bit 0
        uint16_t avail_idx = 0;
        uint16_t used_event = 0;   // meaningful with EVENT_IDX
        uint16_t used_flags = 0;   // VRING_USED_F_NO_NOTIFY is bit 0
        uint16_t used_idx = 0;     // ours, unless the guest scribbled on it
        uint16_t avail_event = 0;  // meaningful with EVENT_IDX
    };
    std::optional<GuestRingFields> guest_ring_fields() const;

private:
    struct Descriptor {
        uint64_t address;
        uint32_t length;
        uint16_t flags;
        uint16_t next;
    };

    // One fetch of table entry `index` (in range) into a local.
    static Descriptor fetch_descriptor(std::span<uint8_t> table, uint32_t index);
    // Reads and validates the driver's available index; nullopt if broken.
    std::optional<uint16_t> fetch_avail_index();
    // Each returns false after fail(). walk_chain starts at chain.head.
    bool walk_chain(DescriptorChain& chain);
    bool walk_indirect(const Descriptor& table, DescriptorChain& chain, bool& seen_writable);
    bool add_buffer(const Descriptor& descriptor, uint32_t index, bool indirect, DescriptorChain& chain,
                    bool& seen_writable);
    void write_avail_event();
    // The one place a broken ring rule is handled.
    void fail(VirtQueueError error, std::string reason);
    bool tracing() const { return options_.trace != nullptr && options_.trace->load(std::memory_order_relaxed); }
    void trace_pop(const DescriptorChain& chain) const;

    const GuestMemory& memory_;
    std::string name_;
    VirtQueueOptions options_;
    bool event_idx_ = false;
    bool indirect_descriptors_ = false;

    bool ready_ = false;
    uint32_t pfn_ = 0;
    uint32_t size_ = 0;
    uint64_t guest_address_ = 0;
    // Host views of the three parts, obtained from GuestMemory at configure().
    std::span<uint8_t> descriptors_;
    std::span<uint8_t> avail_;
    std::span<uint8_t> used_;

    uint16_t next_avail_ = 0;     // next available entry the device takes
    uint16_t last_seen_avail_ = 0;  // the driver's index as last read
    uint16_t used_idx_ = 0;       // our used index (the guest cannot move it)
    uint16_t signalled_used_ = 0; // used index at the last needs_interrupt()
    uint32_t in_flight_ = 0;      // popped, not yet pushed
    bool notifications_enabled_ = true;

    VirtQueueError error_ = VirtQueueError::None;
    std::string reason_;
    uint64_t error_count_ = 0;
};

}  // namespace minikvm
