#pragma once
// One request the driver made available: the buffers of a validated
// descriptor chain, already translated to host memory by GuestMemory.
// Device-readable buffers come as const spans (a device MUST NOT write them,
// virtio 1.2 2.7.5.1), device-writable ones as mutable spans.
//
// The bytes still belong to the guest and may change while the device looks
// at them: copy a header into a local (read()) before validating it, and
// never read a field twice.

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <vector>

namespace minikvm {

struct ReadableBuffer {
    uint64_t guest_address = 0;  // for logs; use `bytes` to access
    std::span<const uint8_t> bytes;
};

struct WritableBuffer {
    uint64_t guest_address = 0;
    std::span<uint8_t> bytes;
};

struct DescriptorChain {
    uint16_t head = 0;  // what push() wants back
    std::vector<ReadableBuffer> readable;  // in chain order
    std::vector<WritableBuffer> writable;  // in chain order
    // Totals in bytes; the queue guarantees readable + writable < 2^32.
    uint32_t readable_length = 0;
    uint32_t writable_length = 0;

    // Copy device-readable bytes, as if the readable buffers were one
    // contiguous stream, from stream position `offset` into `out`. Returns
    // how many bytes were copied (fewer than out.size() at the end).
    size_t read(uint64_t offset, std::span<uint8_t> out) const;
    // Copy `data` into the device-writable stream at position `offset`.
    // Returns how many bytes fit.
    size_t write(uint64_t offset, std::span<const uint8_t> data) const;
    // The same streams from position `offset` to their end as iovecs (into
    // `out`, replaced), for a system call that moves the bytes itself
    // (preadv into writable buffers, pwritev from readable ones).
    void readable_iovecs(uint64_t offset, std::vector<iovec>& out) const;
    void writable_iovecs(uint64_t offset, std::vector<iovec>& out) const;
};

}  // namespace minikvm
