#include "virtio/descriptor_chain.h"

#include <algorithm>
#include <cstring>

namespace minikvm {

namespace {

// Walks buffers as one stream: calls copy(buffer bytes, position in span
// range) for each piece that overlaps [offset, offset + length).
template <typename Buffers, typename Copy>
size_t for_each_piece(const Buffers& buffers, uint64_t offset, size_t length, Copy copy) {
    size_t done = 0;
    for (const auto& buffer : buffers) {
        if (done == length) break;
        const uint64_t size = buffer.bytes.size();
        if (offset >= size) {
            offset -= size;
            continue;
        }
        const size_t piece = static_cast<size_t>(std::min<uint64_t>(size - offset, length - done));
        copy(buffer.bytes.subspan(static_cast<size_t>(offset), piece), done);
        done += piece;
        offset = 0;
    }
    return done;
}

}  // namespace

size_t DescriptorChain::read(uint64_t offset, std::span<uint8_t> out) const {
    return for_each_piece(readable, offset, out.size(), [&](std::span<const uint8_t> piece, size_t at) {
        std::memcpy(out.data() + at, piece.data(), piece.size());
    });
}

size_t DescriptorChain::write(uint64_t offset, std::span<const uint8_t> data) const {
    return for_each_piece(writable, offset, data.size(), [&](std::span<uint8_t> piece, size_t at) {
        std::memcpy(piece.data(), data.data() + at, piece.size());
    });
}

void DescriptorChain::readable_iovecs(uint64_t offset, std::vector<iovec>& out) const {
    out.clear();
    if (offset >= readable_length) return;
    for_each_piece(readable, offset, readable_length - offset, [&](std::span<const uint8_t> piece, size_t) {
        // iovec has no const flavour; pwritev only reads through it.
        out.push_back({const_cast<uint8_t*>(piece.data()), piece.size()});
    });
}

void DescriptorChain::writable_iovecs(uint64_t offset, std::vector<iovec>& out) const {
    out.clear();
    if (offset >= writable_length) return;
    for_each_piece(writable, offset, writable_length - offset,
                   [&](std::span<uint8_t> piece, size_t) { out.push_back({piece.data(), piece.size()}); });
}

}  // namespace minikvm
