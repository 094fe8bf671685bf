#include "virtio/virtqueue.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <bit>
#include <cstring>
#include <limits>
#include <utility>

#include "virtio/split_ring.h"

namespace minikvm {

namespace sr = split_ring;

namespace {

// The ring is little-endian and x86 hosts are too, so the 16-bit shared
// fields can be loaded and stored natively.
static_assert(std::endian::native == std::endian::little, "the split ring is little-endian");
static_assert(std::atomic_ref<uint16_t>::is_always_lock_free);

// The 16-bit fields driver and device share (indices, flags, event indices,
// available entries) are naturally aligned in the legacy layout. A relaxed
// atomic access is one untorn fetch or store that the compiler can neither
// split nor repeat; the ordering comes from the fences at the call sites.
uint16_t load_u16(std::span<uint8_t> part, uint64_t offset) {
    return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(part.data() + offset))
        .load(std::memory_order_relaxed);
}

void store_u16(std::span<uint8_t> part, uint64_t offset, uint16_t value) {
    std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(part.data() + offset))
        .store(value, std::memory_order_relaxed);
}

uint64_t decode_le(const uint8_t* bytes, int count) {
    uint64_t value = 0;
    for (int i = count - 1; i >= 0; --i) value = (value << 8) | bytes[i];
    return value;
}

void encode_le32(uint8_t* bytes, uint32_t value) {
    for (int i = 0; i < 4; ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i));
}

// A trace lists at most this many buffers of a chain (a chain may hold a
// whole queue's worth), then how many it left out.
constexpr size_t kTracedBuffers = 16;

std::string describe(uint16_t head, uint32_t index, bool indirect) {
    return indirect ? fmt::format("chain head {}, indirect descriptor {}", head, index)
                    : fmt::format("chain head {}, descriptor {}", head, index);
}

}  // namespace

VirtQueue::VirtQueue(const GuestMemory& memory, std::string name, VirtQueueOptions options)
    : memory_(memory), name_(std::move(name)), options_(options) {}

void VirtQueue::set_features(uint64_t negotiated_features) {
    indirect_descriptors_ = (negotiated_features >> sr::kFeatureIndirectDesc) & 1;
    event_idx_ = (negotiated_features >> sr::kFeatureEventIdx) & 1;
}

void VirtQueue::reset() {
    ready_ = false;
    pfn_ = 0;
    size_ = 0;
    guest_address_ = 0;
    descriptors_ = {};
    avail_ = {};
    used_ = {};
    next_avail_ = 0;
    last_seen_avail_ = 0;
    used_idx_ = 0;
    signalled_used_ = 0;
    in_flight_ = 0;
    notifications_enabled_ = true;
    error_ = VirtQueueError::None;
    reason_.clear();
}

bool VirtQueue::configure(uint32_t pfn, uint32_t size) {
    reset();
    pfn_ = pfn;
    size_ = size;
    guest_address_ = uint64_t{pfn} << sr::kLegacyPageShift;
    if (!sr::valid_queue_size(size)) {
        fail(VirtQueueError::BadQueueSize,
             fmt::format("virtio 1.2 2.7: queue size {} is not a power of two in 1..{}", size, sr::kMaxQueueSize));
        return false;
    }
    // The device touches the three parts only, so those must be RAM; the
    // padding before the used ring need not be (no address can overflow:
    // the base is below 2^44 and the ring below 1 MiB).
    const sr::LegacyLayout layout = sr::legacy_layout(size);
    auto descriptors = memory_.span(guest_address_ + layout.descriptors, layout.descriptors_size);
    auto avail = memory_.span(guest_address_ + layout.avail, layout.avail_size);
    auto used = memory_.span(guest_address_ + layout.used, layout.used_size);
    if (!descriptors || !avail || !used) {
        fail(VirtQueueError::RingOutsideRam,
             fmt::format("virtio 1.2 2.7.2: the {}-entry ring at PFN {:#x} (guest {:#x}..{:#x}) is not all guest RAM",
                         size, pfn, guest_address_, guest_address_ + layout.end - 1));
        return false;
    }
    descriptors_ = *descriptors;
    avail_ = *avail;
    used_ = *used;
    // The driver zeroed the ring (2.7.10.1), so no field needs writing now.
    ready_ = true;
    if (tracing())
        spdlog::info("trace {} configure pfn={:#x} size={} desc={:#x} avail={:#x} used={:#x}", name_, pfn, size,
                     guest_address_ + layout.descriptors, guest_address_ + layout.avail, guest_address_ + layout.used);
    return true;
}

VirtQueue::Descriptor VirtQueue::fetch_descriptor(std::span<uint8_t> table, uint32_t index) {
    uint8_t raw[sr::kDescriptorSize];
    std::memcpy(raw, table.data() + sr::kDescriptorSize * index, sizeof raw);
    // Compiler barrier: every field below is decoded from the local copy; the
    // compiler may not read guest memory again in its place (no double fetch).
    std::atomic_signal_fence(std::memory_order_seq_cst);
    return {.address = decode_le(raw, 8),
            .length = static_cast<uint32_t>(decode_le(raw + 8, 4)),
            .flags = static_cast<uint16_t>(decode_le(raw + 12, 2)),
            .next = static_cast<uint16_t>(decode_le(raw + 14, 2))};
}

std::optional<uint16_t> VirtQueue::fetch_avail_index() {
    const uint16_t index = load_u16(avail_, sr::kRingIndex);
    const auto pending = static_cast<uint16_t>(index - next_avail_);
    const auto seen = static_cast<uint16_t>(last_seen_avail_ - next_avail_);
    if (pending > size_ || pending < seen) {
        // Modulo 2^16 "back a little" and "far ahead" look alike; call it
        // backwards when it is at most a ring's worth behind what we saw.
        if (static_cast<uint16_t>(last_seen_avail_ - index) <= size_)
            fail(VirtQueueError::AvailIndexBackwards,
                 fmt::format("virtio 1.2 2.7.6.1: the available index went back from {} to {}", last_seen_avail_,
                             index));
        else
            fail(VirtQueueError::AvailIndexTooFar,
                 fmt::format("virtio 1.2 2.7.6: the available index {} is {} entries past the next one to take ({}), "
                             "more than the queue size {}",
                             index, pending, next_avail_, size_));
        return std::nullopt;
    }
    last_seen_avail_ = index;
    // The entries and descriptors this index publishes are read after it.
    std::atomic_thread_fence(std::memory_order_acquire);
    return index;
}

bool VirtQueue::has_available() {
    if (!ready_ || broken()) return false;
    auto index = fetch_avail_index();
    return index && *index != next_avail_;
}

std::optional<DescriptorChain> VirtQueue::pop() {
    if (!ready_ || broken()) return std::nullopt;
    auto index = fetch_avail_index();
    if (index && *index == next_avail_ && event_idx_ && notifications_enabled_) {
        // Empty as far as we can see. The avail_event our last pop stored
        // must be visible before we conclude so: a driver adding a buffer
        // now reads it (after its own index store) to decide whether to
        // kick, and store-then-load needs a full fence on both sides, or
        // neither sees the other's write and the kick is lost.
        std::atomic_thread_fence(std::memory_order_seq_cst);
        index = fetch_avail_index();
    }
    if (!index || *index == next_avail_) return std::nullopt;
    // Without this a driver could offer the same head over and over while
    // the device holds every earlier copy, and keep it popping forever.
    if (in_flight_ >= size_) {
        fail(VirtQueueError::TooManyInFlight,
             fmt::format("virtio 1.2 2.7.13.1: available entry {} offered while all {} chains the {}-entry table can "
                         "hold are in flight (each takes a free descriptor)",
                         next_avail_, in_flight_, size_));
        return std::nullopt;
    }

    const uint64_t slot = sr::kRingEntries + sr::kAvailEntrySize * (next_avail_ & (size_ - 1));
    DescriptorChain chain;
    chain.head = load_u16(avail_, slot);
    if (chain.head >= size_) {
        fail(VirtQueueError::HeadOutOfRange,
             fmt::format("virtio 1.2 2.7.5: available entry {} holds head {}, outside the {}-entry descriptor table",
                         next_avail_, chain.head, size_));
        return std::nullopt;
    }
    if (!walk_chain(chain)) return std::nullopt;

    ++next_avail_;
    ++in_flight_;
    // With EVENT_IDX, ask to be kicked for the entry after this one.
    if (event_idx_ && notifications_enabled_) write_avail_event();
    if (tracing()) trace_pop(chain);
    return chain;
}

void VirtQueue::trace_pop(const DescriptorChain& chain) const {
    std::string buffers;
    size_t listed = 0;
    const auto add = [&](uint64_t address, size_t length, char kind) {
        if (listed++ >= kTracedBuffers) return;
        if (!buffers.empty()) buffers += ", ";
        buffers += fmt::format("{:#x}+{} {}", address, length, kind);
    };
    for (const ReadableBuffer& buffer : chain.readable) add(buffer.guest_address, buffer.bytes.size(), 'r');
    for (const WritableBuffer& buffer : chain.writable) add(buffer.guest_address, buffer.bytes.size(), 'w');
    if (listed > kTracedBuffers) buffers += fmt::format(", +{} more", listed - kTracedBuffers);
    spdlog::info("trace {} pop head={} bufs=[{}] avail_idx={}", name_, chain.head, buffers, last_seen_avail_);
}

bool VirtQueue::walk_chain(DescriptorChain& chain) {
    bool seen_writable = false;
    uint32_t index = chain.head;
    // The table holds `size` descriptors, so a longer chain visits one twice.
    for (uint32_t count = 1;; ++count) {
        if (count > size_) {
            fail(VirtQueueError::ChainLoop,
                 fmt::format("virtio 1.2 2.7.5.2: the chain from head {} is longer than the {}-entry table: it loops",
                             chain.head, size_));
            return false;
        }
        const Descriptor descriptor = fetch_descriptor(descriptors_, index);
        if (descriptor.flags & sr::kDescIndirect) {
            if (!indirect_descriptors_) {
                fail(VirtQueueError::IndirectNotNegotiated,
                     fmt::format("virtio 1.2 2.7.5.3.1: INDIRECT set without VIRTIO_RING_F_INDIRECT_DESC ({})",
                                 describe(chain.head, index, false)));
                return false;
            }
            if (descriptor.flags & sr::kDescNext) {
                fail(VirtQueueError::IndirectWithNext,
                     fmt::format("virtio 1.2 2.7.5.3.1: INDIRECT and NEXT both set, flags {:#x} ({})", descriptor.flags,
                                 describe(chain.head, index, false)));
                return false;
            }
            // The table ends the chain. Its own WRITE flag means nothing (2.7.5.3.2).
            return walk_indirect(descriptor, chain, seen_writable);
        }
        if (!add_buffer(descriptor, index, false, chain, seen_writable)) return false;
        if (!(descriptor.flags & sr::kDescNext)) return true;
        if (descriptor.next >= size_) {
            fail(VirtQueueError::NextOutOfRange,
                 fmt::format("virtio 1.2 2.7.5: next {} is outside the {}-entry descriptor table ({})", descriptor.next,
                             size_, describe(chain.head, index, false)));
            return false;
        }
        index = descriptor.next;
    }
}

bool VirtQueue::walk_indirect(const Descriptor& table, DescriptorChain& chain, bool& seen_writable) {
    if (table.length == 0 || table.length % sr::kDescriptorSize != 0) {
        fail(VirtQueueError::IndirectBadLength,
             fmt::format("virtio 1.2 2.7.5.3: indirect table length {} is not a non-zero multiple of 16 "
                         "(chain head {})",
                         table.length, chain.head));
        return false;
    }
    auto bytes = memory_.span(table.address, table.length);
    if (!bytes) {
        fail(VirtQueueError::IndirectTableOutsideRam,
             fmt::format("virtio 1.2 2.7.5.3: indirect table at {:#x}, {} bytes, is not guest RAM (chain head {})",
                         table.address, table.length, chain.head));
        return false;
    }
    const uint32_t entries = static_cast<uint32_t>(table.length / sr::kDescriptorSize);
    uint32_t index = 0;  // an indirect chain starts at the table's first entry
    for (uint32_t count = 1;; ++count) {
        if (count > entries) {
            fail(VirtQueueError::IndirectLoop,
                 fmt::format("virtio 1.2 2.7.5.2: the indirect chain from head {} is longer than its {}-entry table: "
                             "it loops",
                             chain.head, entries));
            return false;
        }
        const Descriptor descriptor = fetch_descriptor(*bytes, index);
        if (descriptor.flags & sr::kDescIndirect) {
            fail(VirtQueueError::IndirectNested,
                 fmt::format("virtio 1.2 2.7.5.3.1: INDIRECT set inside an indirect table, flags {:#x} ({})",
                             descriptor.flags, describe(chain.head, index, true)));
            return false;
        }
        if (chain.readable.size() + chain.writable.size() >= size_) {
            fail(VirtQueueError::IndirectChainTooLong,
                 fmt::format("virtio 1.2 2.7.5.3.1: the chain from head {} has more than the queue size {} descriptors",
                             chain.head, size_));
            return false;
        }
        if (!add_buffer(descriptor, index, true, chain, seen_writable)) return false;
        if (!(descriptor.flags & sr::kDescNext)) return true;
        if (descriptor.next >= entries) {
            fail(VirtQueueError::IndirectNextOutOfRange,
                 fmt::format("virtio 1.2 2.7.5.3: next {} is outside the {}-entry indirect table ({})", descriptor.next,
                             entries, describe(chain.head, index, true)));
            return false;
        }
        index = descriptor.next;
    }
}

bool VirtQueue::add_buffer(const Descriptor& descriptor, uint32_t index, bool indirect, DescriptorChain& chain,
                           bool& seen_writable) {
    // The running totals are each below 2^32, so this sum cannot overflow.
    const uint64_t total = uint64_t{chain.readable_length} + chain.writable_length + descriptor.length;
    if (total > std::numeric_limits<uint32_t>::max()) {
        fail(VirtQueueError::ChainTooLong,
             fmt::format("virtio 1.2 2.7.5.2: the chain reaches {} bytes, over 2^32 - 1 ({})", total,
                         describe(chain.head, index, indirect)));
        return false;
    }
    // A zero-length buffer gives access to nothing, so where it points does not matter.
    std::span<uint8_t> bytes;
    if (descriptor.length != 0) {
        auto span = memory_.span(descriptor.address, descriptor.length);
        if (!span) {
            fail(VirtQueueError::BufferOutsideRam,
                 fmt::format("virtio 1.2 2.7.5: buffer at {:#x}, {} bytes, is not guest RAM ({})", descriptor.address,
                             descriptor.length, describe(chain.head, index, indirect)));
            return false;
        }
        bytes = *span;
    }
    if (descriptor.flags & sr::kDescWrite) {
        seen_writable = true;
        chain.writable.push_back({descriptor.address, bytes});
        chain.writable_length += descriptor.length;
        return true;
    }
    if (seen_writable && options_.require_readable_before_writable) {
        fail(VirtQueueError::ReadableAfterWritable,
             fmt::format("virtio 1.2 2.7.4.2: a device-readable buffer follows a device-writable one ({})",
                         describe(chain.head, index, indirect)));
        return false;
    }
    chain.readable.push_back({descriptor.address, bytes});
    chain.readable_length += descriptor.length;
    return true;
}

bool VirtQueue::push(uint16_t head, uint32_t written_length) {
    const UsedElement element{head, written_length};
    return push_batch(std::span(&element, 1));
}

bool VirtQueue::push_batch(std::span<const UsedElement> elements) {
    // After a break or a reset, late completions are dropped without a word.
    if (!ready_ || broken()) return false;
    if (elements.empty()) return true;
    if (elements.size() > in_flight_) {
        spdlog::error("virtqueue {}: device bug: push of {} chains at once with {} in flight (queue size {})", name_,
                      elements.size(), in_flight_, size_);
        return false;
    }
    for (const UsedElement& element : elements)
        if (element.head >= size_) {
            spdlog::error("virtqueue {}: device bug: push of head {}, outside the {}-entry table", name_, element.head,
                          size_);
            return false;
        }
    uint16_t index = used_idx_;
    for (const UsedElement& element : elements) {
        uint8_t bytes[sr::kUsedEntrySize];
        encode_le32(bytes, element.head);
        encode_le32(bytes + 4, element.written_length);
        const uint64_t slot = sr::kRingEntries + sr::kUsedEntrySize * (index & (size_ - 1));
        std::memcpy(used_.data() + slot, bytes, sizeof bytes);
        ++index;
    }
    // The driver must see the elements (and the data they describe) before
    // the index that publishes them (2.7.8.2).
    std::atomic_thread_fence(std::memory_order_release);
    used_idx_ = index;
    store_u16(used_, sr::kRingIndex, used_idx_);
    in_flight_ -= static_cast<uint32_t>(elements.size());
    if (tracing()) {
        uint16_t traced = static_cast<uint16_t>(used_idx_ - elements.size());
        for (const UsedElement& element : elements)
            spdlog::info("trace {} push head={} len={} used_idx={}", name_, element.head, element.written_length,
                         ++traced);
    }
    return true;
}

bool VirtQueue::needs_interrupt() {
    if (!ready_ || broken()) return false;
    // Our used index store must be visible before we read the driver's
    // suppression fields (store then load needs a full fence), or a driver
    // that just re-enabled interrupts could be missed.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint16_t old_index = std::exchange(signalled_used_, used_idx_);
    if (old_index == used_idx_) return false;  // nothing new since the last answer
    if (event_idx_) {
        // The flags field is ignored with EVENT_IDX (2.7.7.2).
        const uint16_t used_event = load_u16(avail_, sr::avail_used_event_offset(size_));
        const bool needed = sr::need_event(used_event, used_idx_, old_index);
        // A suppressed interrupt is the usual suspect when a driver hangs.
        if (!needed && tracing())
            spdlog::info("trace {} irq suppressed used_event={} used_idx={}", name_, used_event, used_idx_);
        return needed;
    }
    const bool needed = (load_u16(avail_, sr::kRingFlags) & sr::kAvailNoInterrupt) == 0;
    if (!needed && tracing()) spdlog::info("trace {} irq suppressed NO_INTERRUPT used_idx={}", name_, used_idx_);
    return needed;
}

std::optional<VirtQueue::GuestRingFields> VirtQueue::guest_ring_fields() const {
    if (!ready_) return std::nullopt;
    return GuestRingFields{.avail_flags = load_u16(avail_, sr::kRingFlags),
                           .avail_idx = load_u16(avail_, sr::kRingIndex),
                           .used_event = load_u16(avail_, sr::avail_used_event_offset(size_)),
                           .used_flags = load_u16(used_, sr::kRingFlags),
                           .used_idx = load_u16(used_, sr::kRingIndex),
                           .avail_event = load_u16(used_, sr::used_avail_event_offset(size_))};
}

void VirtQueue::write_avail_event() {
    store_u16(used_, sr::used_avail_event_offset(size_), next_avail_);
}

void VirtQueue::disable_notifications() {
    notifications_enabled_ = false;
    if (!ready_ || broken()) return;
    // With EVENT_IDX the flags stay 0 (2.7.10.2); avail_event just stops
    // moving, so the driver kicks at most once more.
    if (!event_idx_) store_u16(used_, sr::kRingFlags, sr::kUsedNoNotify);
}

bool VirtQueue::enable_notifications() {
    notifications_enabled_ = true;
    if (!ready_ || broken()) return false;
    if (event_idx_) write_avail_event();
    else store_u16(used_, sr::kRingFlags, 0);
    // The driver may have added buffers before it could see the change and
    // so not kicked: look again, after our store is visible.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return has_available();
}

void VirtQueue::fail(VirtQueueError error, std::string reason) {
    error_ = error;
    reason_ = std::move(reason);
    ++error_count_;
    spdlog::error("virtqueue {}: broken until reset: {}", name_, reason_);
}

}  // namespace minikvm
