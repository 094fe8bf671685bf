#include "virtio/virtqueue_fuzz.h"

#include <algorithm>
#include <span>

#include "virtio/split_ring.h"
#include "virtio/virtqueue.h"
#include "vmm/core/guest_memory.h"

namespace minikvm {

namespace {

constexpr uint64_t kMemorySize = 1 << 20;  // 1 MiB: the largest ring (836 KiB) still fits
constexpr uint64_t kPages = kMemorySize >> split_ring::kLegacyPageShift;

// Input layout:
//   [0]     log2 of the queue size (modulo 16: 1..32768)
//   [1]     bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 lenient framing,
//           bit 3 start with notifications disabled
//   [2..3]  ring PFN, little-endian, modulo kPages + 1 (so some rings do not fit)
//   [4..]   guest memory contents, from the ring's first byte on (descriptor
//           table, available ring...), wrapping to address 0 for the rest
constexpr size_t kHeader = 4;

void fill_memory(const GuestMemory& memory, uint64_t ring, std::span<const uint8_t> image) {
    image = image.first(std::min<size_t>(image.size(), kMemorySize));
    const size_t head = std::min<size_t>(image.size(), kMemorySize - std::min(ring, kMemorySize));
    memory.write(ring, image.first(head));
    memory.write(0, image.subspan(head));
}

// What a device does with a chain: read a header, write an answer, return it.
void serve(VirtQueue& queue, const DescriptorChain& chain) {
    uint8_t header[64];
    const size_t got = chain.read(0, header);
    const size_t put = chain.write(0, std::span<const uint8_t>(header, got));
    queue.push(chain.head, static_cast<uint32_t>(put));
}

}  // namespace

int fuzz_virtqueue(const uint8_t* data, size_t size) {
    if (size < kHeader) return 0;
    const uint32_t queue_size = 1u << (data[0] % 16);
    const uint8_t bits = data[1];
    const uint32_t pfn = static_cast<uint32_t>((data[2] | (data[3] << 8)) % (kPages + 1));

    GuestMemory memory = GuestMemory::allocate(kMemorySize);
    fill_memory(memory, uint64_t{pfn} << split_ring::kLegacyPageShift, std::span(data + kHeader, size - kHeader));

    VirtQueue queue(memory, "fuzz", VirtQueueOptions{.require_readable_before_writable = (bits & 4) == 0});
    uint64_t features = 0;
    if (bits & 1) features |= uint64_t{1} << split_ring::kFeatureEventIdx;
    if (bits & 2) features |= uint64_t{1} << split_ring::kFeatureIndirectDesc;
    queue.set_features(features);
    if (!queue.configure(pfn, queue_size)) return 0;
    if (bits & 8) queue.disable_notifications();

    // Two rounds, the second after a reset if the first broke the ring.
    // Device writes may land on the ring itself (the guest can point buffers
    // there), so the pops are bounded rather than trusted to run dry.
    for (int round = 0; round < 2; ++round) {
        for (uint32_t pops = 0; pops <= queue_size; ++pops) {
            auto chain = queue.pop();
            if (!chain) break;
            serve(queue, *chain);
        }
        queue.needs_interrupt();
        queue.enable_notifications();
        if (queue.broken()) {
            queue.reset();
            if (!queue.configure(pfn, queue_size)) break;
        }
    }
    return 0;
}

}  // namespace minikvm
