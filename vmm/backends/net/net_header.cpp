#include "vmm/backends/net/net_header.h"

#include <fmt/format.h>

namespace minikvm::net {

namespace {

uint16_t le16(std::span<const uint8_t> bytes, size_t offset) {
    return static_cast<uint16_t>(bytes[offset] | bytes[offset + 1] << 8);
}

void put_le16(std::span<uint8_t> bytes, size_t offset, uint16_t value) {
    bytes[offset] = static_cast<uint8_t>(value);
    bytes[offset + 1] = static_cast<uint8_t>(value >> 8);
}

}  // namespace

Header decode(std::span<const uint8_t> bytes) {
    Header header;
    header.flags = bytes[0];
    header.gso_type = bytes[1];
    header.hdr_len = le16(bytes, 2);
    header.gso_size = le16(bytes, 4);
    header.csum_start = le16(bytes, 6);
    header.csum_offset = le16(bytes, 8);
    if (bytes.size() >= kMergeableHeaderSize) header.num_buffers = le16(bytes, kNumBuffersOffset);
    return header;
}

void encode(const Header& header, std::span<uint8_t> bytes) {
    bytes[0] = header.flags;
    bytes[1] = header.gso_type;
    put_le16(bytes, 2, header.hdr_len);
    put_le16(bytes, 4, header.gso_size);
    put_le16(bytes, 6, header.csum_start);
    put_le16(bytes, 8, header.csum_offset);
    if (bytes.size() >= kMergeableHeaderSize) put_le16(bytes, kNumBuffersOffset, header.num_buffers);
}

std::string check_transmit(const Header& header, uint32_t frame_length, const Offloads& offloads) {
    if (frame_length < kEthernetHeader)
        return fmt::format("frame of {} bytes is shorter than an Ethernet header", frame_length);
    if (frame_length > kMaxFrame) return fmt::format("frame of {} bytes is over the {}-byte limit", frame_length, kMaxFrame);

    if ((header.flags & kFlagNeedsCsum) != 0) {
        if (!offloads.csum)
            return "virtio 1.2 5.1.6.2.1: NEEDS_CSUM set but VIRTIO_NET_F_CSUM not negotiated";
        // The checksum field (2 bytes) must lie inside the frame.
        const uint32_t end = uint32_t{header.csum_start} + header.csum_offset + 2;
        if (end > frame_length)
            return fmt::format("checksum at csum_start {} + csum_offset {} is past the {}-byte frame",
                               header.csum_start, header.csum_offset, frame_length);
    }

    const uint8_t type = header.gso_type & static_cast<uint8_t>(~kGsoEcn);
    const bool ecn = (header.gso_type & kGsoEcn) != 0;
    switch (type) {
        case kGsoNone:
            if (ecn) return "gso_type NONE with the ECN bit";
            // Without segmentation a frame is one packet: 65535 bytes of IP at most.
            if (frame_length > 65535 + kEthernetHeader + 4)
                return fmt::format("frame of {} bytes without segmentation offload is larger than any MTU",
                                   frame_length);
            return {};
        case kGsoTcpV4:
            if (!offloads.tso4)
                return "virtio 1.2 5.1.6.2.1: gso_type TCPV4 but VIRTIO_NET_F_HOST_TSO4 not negotiated";
            break;
        case kGsoTcpV6:
            if (!offloads.tso6)
                return "virtio 1.2 5.1.6.2.1: gso_type TCPV6 but VIRTIO_NET_F_HOST_TSO6 not negotiated";
            break;
        case kGsoUdp: return "virtio 1.2 5.1.6.2.1: gso_type UDP but VIRTIO_NET_F_HOST_UFO is not offered";
        default: return fmt::format("unknown gso_type {:#04x}", header.gso_type);
    }
    if (ecn && !offloads.ecn)
        return "virtio 1.2 5.1.6.2.1: gso_type with the ECN bit but VIRTIO_NET_F_HOST_ECN not negotiated";
    if (header.gso_size == 0) return "segmentation offload with gso_size 0";
    if (header.hdr_len > frame_length)
        return fmt::format("hdr_len {} is past the {}-byte frame", header.hdr_len, frame_length);
    return {};
}

std::string check_receive(const Header& header, const Offloads& offloads) {
    if ((header.flags & kFlagNeedsCsum) != 0 && !offloads.csum) return "partial checksum, but GUEST_CSUM is off";
    const uint8_t type = header.gso_type & static_cast<uint8_t>(~kGsoEcn);
    if (type == kGsoNone) return {};
    if ((type == kGsoTcpV4 && !offloads.tso4) || (type == kGsoTcpV6 && !offloads.tso6) ||
        (type != kGsoTcpV4 && type != kGsoTcpV6))
        return fmt::format("gso_type {:#04x}, which the driver did not accept", header.gso_type);
    if ((header.gso_type & kGsoEcn) != 0 && !offloads.ecn) return "TSO with ECN, which the driver did not accept";
    return {};
}

uint8_t receive_flags(const Header& header, const Offloads& offloads) {
    if (!offloads.csum) return 0;
    return header.flags & (kFlagNeedsCsum | kFlagDataValid);
}

Header sanitized_for_tap(const Header& header) {
    Header out = header;
    out.flags = header.flags & kFlagNeedsCsum;
    out.num_buffers = 0;
    if ((header.gso_type & static_cast<uint8_t>(~kGsoEcn)) == kGsoNone) {
        // Meaningless without segmentation; the tap checks hdr_len anyway.
        out.gso_size = 0;
        out.hdr_len = 0;
    }
    return out;
}

}  // namespace minikvm::net
