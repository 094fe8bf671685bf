#include "virtio/blk_request.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace minikvm::blk {

namespace {

uint64_t load_le(const uint8_t* bytes, int count) {
    uint64_t value = 0;
    for (int i = count - 1; i >= 0; --i) value = (value << 8) | bytes[i];
    return value;
}

Request complete(Request request, uint8_t status, std::string problem) {
    request.kind = Kind::Complete;
    request.status = status;
    request.problem = std::move(problem);
    return request;
}

// The pieces of `buffers` (as one stream) in [offset, offset + length).
template <typename Span, typename Buffers>
std::vector<Span> slice(const Buffers& buffers, uint64_t offset, uint64_t length) {
    std::vector<Span> pieces;
    for (const auto& buffer : buffers) {
        if (length == 0) break;
        const uint64_t size = buffer.bytes.size();
        if (offset >= size) {
            offset -= size;
            continue;
        }
        const uint64_t piece = std::min(size - offset, length);
        pieces.push_back(buffer.bytes.subspan(static_cast<size_t>(offset), static_cast<size_t>(piece)));
        length -= piece;
        offset = 0;
    }
    return pieces;
}

// Whether sectors [sector, sector + count) lie on the disk; never overflows.
bool in_range(uint64_t sector, uint64_t count, uint64_t capacity) {
    return sector <= capacity && count <= capacity - sector;
}

// Read and write data: size, buffer count and size, range. Returns "" when fine.
template <typename Span>
std::string check_data(const std::vector<Span>& buffers, uint64_t length, uint64_t sector, const Limits& limits) {
    if (length % kSectorSize != 0)
        return fmt::format("virtio 1.2 5.2.6.1: {} data bytes are not a multiple of 512", length);
    if (buffers.size() > limits.seg_max)
        return fmt::format("virtio 1.2 5.2.3: {} data buffers, more than seg_max {}", buffers.size(), limits.seg_max);
    for (const Span& buffer : buffers)
        if (buffer.size() > limits.size_max)
            return fmt::format("virtio 1.2 5.2.3: a {}-byte data buffer, larger than size_max {}", buffer.size(),
                               limits.size_max);
    if (!in_range(sector, length / kSectorSize, limits.capacity))
        return fmt::format("virtio 1.2 5.2.6.1: sectors {}+{} run past the end of the disk ({} sectors)", sector,
                           length / kSectorSize, limits.capacity);
    return "";
}

Request parse_segments(Request request, const DescriptorChain& chain, const Limits& limits) {
    const bool discard = request.kind == Kind::Discard;
    const uint32_t max_segments = discard ? limits.max_discard_segments : limits.max_write_zeroes_segments;
    const uint32_t max_sectors = discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors;
    const uint64_t payload = chain.readable_length - uint64_t{kHeaderSize};
    if (chain.writable_length != 1)
        return complete(std::move(request), kStatusIoErr,
                        fmt::format("virtio 1.2 5.2.6: {} device-writable bytes; only the status byte belongs there",
                                    chain.writable_length));
    if (payload == 0 || payload % kSegmentSize != 0)
        return complete(std::move(request), kStatusIoErr,
                        fmt::format("virtio 1.2 5.2.6.1: {} bytes of segments, not a non-zero multiple of 16", payload));
    const uint64_t count = payload / kSegmentSize;
    if (count > max_segments)
        return complete(std::move(request), kStatusIoErr,
                        fmt::format("virtio 1.2 5.2.6.1: {} segments, more than the {} allowed", count, max_segments));

    // Every segment is fetched once into a local; flags first, since any
    // unknown flag makes the whole request UNSUPP (5.2.6.2).
    std::vector<uint8_t> raw(static_cast<size_t>(payload));
    chain.read(kHeaderSize, raw);
    for (uint64_t i = 0; i < count; ++i) {
        const uint8_t* bytes = raw.data() + i * kSegmentSize;
        const auto flags = static_cast<uint32_t>(load_le(bytes + 12, 4));
        request.segments.push_back(
            {load_le(bytes, 8), static_cast<uint32_t>(load_le(bytes + 8, 4)), (flags & kSegmentFlagUnmap) != 0});
        if ((flags & ~kSegmentFlagUnmap) != 0)
            return complete(std::move(request), kStatusUnsupp,
                            fmt::format("virtio 1.2 5.2.6.2: segment {} has unknown flags {:#x}", i, flags));
        if (discard && (flags & kSegmentFlagUnmap) != 0)
            return complete(std::move(request), kStatusUnsupp,
                            fmt::format("virtio 1.2 5.2.6.2: segment {} of a discard sets UNMAP", i));
    }
    for (size_t i = 0; i < request.segments.size(); ++i) {
        const Segment& segment = request.segments[i];
        if (segment.sectors > max_sectors)
            return complete(std::move(request), kStatusIoErr,
                            fmt::format("virtio 1.2 5.2.4: segment {} has {} sectors, more than the {} allowed", i,
                                        segment.sectors, max_sectors));
        if (!in_range(segment.sector, segment.sectors, limits.capacity))
            return complete(std::move(request), kStatusIoErr,
                            fmt::format("virtio 1.2 5.2.6.1: segment {} (sectors {}+{}) runs past the end of the disk "
                                        "({} sectors)",
                                        i, segment.sector, segment.sectors, limits.capacity));
    }
    return request;
}

}  // namespace

Request parse_request(const DescriptorChain& chain, const Limits& limits) {
    Request request;
    if (chain.writable_length == 0) {
        request.kind = Kind::NoStatus;
        request.problem = "virtio 1.2 5.2.6: no device-writable byte for the status";
        return request;
    }
    if (chain.readable_length < kHeaderSize)
        return complete(std::move(request), kStatusIoErr,
                        fmt::format("virtio 1.2 5.2.6: the device-readable header is {} bytes, not 16",
                                    chain.readable_length));

    // One fetch of the header into a local: the guest may change it meanwhile.
    uint8_t header[kHeaderSize];
    chain.read(0, header);
    request.type = static_cast<uint32_t>(load_le(header, 4));
    request.sector = load_le(header + 8, 8);
    const uint64_t writable_data = chain.writable_length - uint64_t{1};  // all but the status byte
    const uint64_t readable_data = chain.readable_length - uint64_t{kHeaderSize};

    switch (request.type) {
        case kTypeIn: {
            request.kind = Kind::Read;
            if (readable_data != 0)
                return complete(std::move(request), kStatusIoErr,
                                fmt::format("virtio 1.2 5.2.6: {} device-readable bytes after the header of a read",
                                            readable_data));
            request.data_length = writable_data;
            request.read_buffers = slice<std::span<uint8_t>>(chain.writable, 0, writable_data);
            std::string problem = check_data(request.read_buffers, request.data_length, request.sector, limits);
            if (!problem.empty()) return complete(std::move(request), kStatusIoErr, std::move(problem));
            return request;
        }
        case kTypeOut: {
            request.kind = Kind::Write;
            if (limits.read_only)
                return complete(std::move(request), kStatusIoErr, "virtio 1.2 5.2.6.2: write to a read-only disk");
            if (writable_data != 0)
                return complete(std::move(request), kStatusIoErr,
                                fmt::format("virtio 1.2 5.2.6: {} device-writable bytes before the status of a write",
                                            writable_data));
            request.data_length = readable_data;
            request.write_buffers = slice<std::span<const uint8_t>>(chain.readable, kHeaderSize, readable_data);
            std::string problem = check_data(request.write_buffers, request.data_length, request.sector, limits);
            if (!problem.empty()) return complete(std::move(request), kStatusIoErr, std::move(problem));
            return request;
        }
        case kTypeFlush:
        case kTypeFlushOut:
            request.kind = Kind::Flush;
            if (!limits.flush)
                return complete(std::move(request), kStatusUnsupp,
                                "virtio 1.2 5.2.3: FLUSH without VIRTIO_BLK_F_FLUSH negotiated");
            return request;
        case kTypeGetId:
            request.kind = Kind::GetId;
            if (writable_data != kIdBytes)
                return complete(std::move(request), kStatusIoErr,
                                fmt::format("virtio 1.2 5.2.6.1: GET_ID with {} data bytes, not 20", writable_data));
            return request;
        case kTypeDiscard:
        case kTypeWriteZeroes: {
            const bool discard = request.type == kTypeDiscard;
            request.kind = discard ? Kind::Discard : Kind::WriteZeroes;
            if (!(discard ? limits.discard : limits.write_zeroes))
                return complete(std::move(request), kStatusUnsupp,
                                fmt::format("virtio 1.2 5.2.3: {} without its feature negotiated", type_name(request.type)));
            if (limits.read_only)
                return complete(std::move(request), kStatusIoErr,
                                fmt::format("virtio 1.2 5.2.6.2: {} on a read-only disk", type_name(request.type)));
            return parse_segments(std::move(request), chain, limits);
        }
        default:
            return complete(std::move(request), kStatusUnsupp,
                            fmt::format("unsupported request type {:#x} ({})", request.type, type_name(request.type)));
    }
}

uint32_t finish_request(const DescriptorChain& chain, uint8_t status, uint64_t produced) {
    if (chain.writable_length == 0) return 0;
    const uint64_t status_position = chain.writable_length - uint64_t{1};
    // One pass over the buffers: zero [produced, status_position), then the status.
    uint64_t start = 0;
    for (const WritableBuffer& buffer : chain.writable) {
        const uint64_t end = start + buffer.bytes.size();
        const uint64_t from = std::max(start, produced);
        const uint64_t to = std::min(end, status_position);
        if (from < to) std::memset(buffer.bytes.data() + (from - start), 0, static_cast<size_t>(to - from));
        if (status_position >= start && status_position < end) buffer.bytes[status_position - start] = status;
        start = end;
    }
    return chain.writable_length;
}

const char* type_name(uint32_t type) {
    switch (type) {
        case kTypeIn: return "IN";
        case kTypeOut: return "OUT";
        case kTypeScsiCmd: return "SCSI_CMD (legacy)";
        case kTypeScsiCmdOut: return "SCSI_CMD_OUT (legacy)";
        case kTypeFlush: return "FLUSH";
        case kTypeFlushOut: return "FLUSH_OUT (legacy)";
        case kTypeGetId: return "GET_ID";
        case kTypeGetLifetime: return "GET_LIFETIME";
        case kTypeDiscard: return "DISCARD";
        case kTypeWriteZeroes: return "WRITE_ZEROES";
        case kTypeSecureErase: return "SECURE_ERASE";
        default: return (type & kTypeBarrier) != 0 ? "with the legacy BARRIER bit" : "unknown";
    }
}

}  // namespace minikvm::blk
