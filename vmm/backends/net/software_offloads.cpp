#include "vmm/backends/net/software_offloads.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

namespace minikvm::net {

namespace {

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr uint16_t kEtherTypeVlan = 0x8100;
constexpr uint8_t kProtocolTcp = 6;
constexpr uint32_t kIpv6Header = 40;
constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpPsh = 0x08;
constexpr uint8_t kTcpCwr = 0x80;

uint16_t be16(std::span<const uint8_t> bytes, size_t at) {
    return static_cast<uint16_t>((bytes[at] << 8) | bytes[at + 1]);
}
uint32_t be32(std::span<const uint8_t> bytes, size_t at) {
    return (uint32_t{bytes[at]} << 24) | (uint32_t{bytes[at + 1]} << 16) | (uint32_t{bytes[at + 2]} << 8) |
           bytes[at + 3];
}
void put_be16(std::span<uint8_t> bytes, size_t at, uint16_t value) {
    bytes[at] = static_cast<uint8_t>(value >> 8);
    bytes[at + 1] = static_cast<uint8_t>(value);
}
void put_be32(std::span<uint8_t> bytes, size_t at, uint32_t value) {
    put_be16(bytes, at, static_cast<uint16_t>(value >> 16));
    put_be16(bytes, at + 2, static_cast<uint16_t>(value));
}

// Where the headers of a TCP super-packet are, once checked.
struct TcpPacket {
    bool ipv6 = false;
    uint32_t l3 = 0;  // IP header offset
    uint32_t l4 = 0;  // TCP header offset
    uint32_t payload = 0;  // first payload byte
};

std::string parse_tcp(std::span<const uint8_t> frame, bool want_ipv6, TcpPacket& out) {
    if (frame.size() < kEthernetHeader) return "frame shorter than an Ethernet header";
    uint32_t l3 = kEthernetHeader;
    uint16_t type = be16(frame, 12);
    if (type == kEtherTypeVlan) {
        if (frame.size() < kEthernetHeader + 4) return "802.1Q frame shorter than its tag";
        type = be16(frame, 16);
        l3 += 4;
    }
    out.ipv6 = want_ipv6;
    out.l3 = l3;
    if (!want_ipv6) {
        if (type != kEtherTypeIpv4) return fmt::format("TCPV4 segmentation of a frame of EtherType {:#06x}", type);
        if (frame.size() < l3 + 20) return "TCPV4 segmentation: truncated IPv4 header";
        const uint8_t version_ihl = frame[l3];
        const uint32_t ihl = (version_ihl & 0x0fU) * 4;
        if ((version_ihl >> 4) != 4 || ihl < 20) return "TCPV4 segmentation: not an IPv4 header";
        if (frame.size() < l3 + ihl) return "TCPV4 segmentation: truncated IPv4 options";
        if (frame[l3 + 9] != kProtocolTcp) return "TCPV4 segmentation of a packet that is not TCP";
        if ((be16(frame, l3 + 6) & 0x3fff) != 0) return "TCPV4 segmentation of an IPv4 fragment";
        out.l4 = l3 + ihl;
    } else {
        if (type != kEtherTypeIpv6) return fmt::format("TCPV6 segmentation of a frame of EtherType {:#06x}", type);
        if (frame.size() < l3 + kIpv6Header) return "TCPV6 segmentation: truncated IPv6 header";
        if ((frame[l3] >> 4) != 6) return "TCPV6 segmentation: not an IPv6 header";
        if (frame[l3 + 6] != kProtocolTcp)
            return "TCPV6 segmentation: IPv6 extension headers before TCP are not supported";
        out.l4 = l3 + kIpv6Header;
    }
    if (frame.size() < out.l4 + 20) return "segmentation: truncated TCP header";
    const uint32_t tcp_header = (frame[out.l4 + 12] >> 4) * 4U;
    if (tcp_header < 20) return "segmentation: TCP data offset below 5";
    if (frame.size() < out.l4 + tcp_header) return "segmentation: truncated TCP options";
    out.payload = out.l4 + tcp_header;
    return {};
}

// The TCP checksum of `segment` (headers at `packet`'s offsets), over the
// pseudo-header and everything from the TCP header on.
uint16_t tcp_checksum(std::span<const uint8_t> segment, const TcpPacket& packet) {
    const auto tcp_length = static_cast<uint32_t>(segment.size() - packet.l4);
    uint32_t sum = 0;
    if (packet.ipv6) {
        sum = checksum_add(sum, segment.subspan(packet.l3 + 8, 32));  // source and destination
        sum += tcp_length >> 16;
        sum += tcp_length & 0xffff;
    } else {
        sum = checksum_add(sum, segment.subspan(packet.l3 + 12, 8));
        sum += tcp_length;
    }
    sum += kProtocolTcp;
    return checksum_finish(checksum_add(sum, segment.subspan(packet.l4)));
}

std::string segment_tcp(const Header& header, std::span<const uint8_t> frame, bool ipv6, std::vector<uint8_t>& segment,
                        const FrameSink& sink) {
    TcpPacket packet;
    if (std::string problem = parse_tcp(frame, ipv6, packet); !problem.empty()) return problem;
    if (header.gso_size == 0) return "segmentation offload with gso_size 0";
    const uint32_t headers = packet.payload;
    const auto payload = static_cast<uint32_t>(frame.size() - headers);
    const uint32_t count = payload == 0 ? 1 : (payload + header.gso_size - 1) / header.gso_size;
    if (headers - packet.l3 + std::min<uint32_t>(payload, header.gso_size) > 0xffff)
        return fmt::format("segments of gso_size {} would be IP packets over 65535 bytes", header.gso_size);
    const uint32_t ip_header = packet.l4 - packet.l3;
    const uint16_t first_id = ipv6 ? 0 : be16(frame, packet.l3 + 4);
    const uint32_t first_seq = be32(frame, packet.l4 + 4);
    const uint8_t flags = frame[packet.l4 + 13];

    // Grows once to the largest segment; later frames reuse it.
    segment.resize(headers + std::min<uint32_t>(payload, header.gso_size));
    for (uint32_t i = 0; i < count; ++i) {
        const uint32_t offset = i * header.gso_size;
        const uint32_t length = std::min<uint32_t>(header.gso_size, payload - offset);
        const std::span<uint8_t> out(segment.data(), headers + length);
        std::copy_n(frame.begin(), headers, out.begin());
        std::copy_n(frame.begin() + headers + offset, length, out.begin() + headers);
        const uint32_t tcp_and_payload = headers - packet.l4 + length;
        if (ipv6) {
            put_be16(out, packet.l3 + 4, static_cast<uint16_t>(tcp_and_payload));
        } else {
            put_be16(out, packet.l3 + 2, static_cast<uint16_t>(ip_header + tcp_and_payload));
            put_be16(out, packet.l3 + 4, static_cast<uint16_t>(first_id + i));
            put_be16(out, packet.l3 + 10, 0);
            put_be16(out, packet.l3 + 10, checksum_finish(checksum_add(0, out.subspan(packet.l3, ip_header))));
        }
        put_be32(out, packet.l4 + 4, first_seq + offset);
        uint8_t segment_flags = flags;
        if (i + 1 < count) segment_flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
        if (i > 0) segment_flags &= static_cast<uint8_t>(~kTcpCwr);
        out[packet.l4 + 13] = segment_flags;
        put_be16(out, packet.l4 + 16, 0);
        put_be16(out, packet.l4 + 16, tcp_checksum(out, packet));
        sink(out);
    }
    return {};
}

}  // namespace

uint32_t checksum_add(uint32_t sum, std::span<const uint8_t> bytes) {
    size_t i = 0;
    for (; i + 1 < bytes.size(); i += 2) {
        sum += static_cast<uint32_t>((bytes[i] << 8) | bytes[i + 1]);
        // Fold early: 64 KiB frames would otherwise overflow 32 bits.
        if (sum >= 0x80000000U) sum = (sum & 0xffff) + (sum >> 16);
    }
    if (i < bytes.size()) sum += static_cast<uint32_t>(bytes[i] << 8);
    return sum;
}

uint16_t checksum_finish(uint32_t sum) {
    while ((sum >> 16) != 0) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}

std::string complete_offloads(const Header& header, std::span<uint8_t> frame, std::vector<uint8_t>& scratch,
                              const FrameSink& sink) {
    if (frame.size() < kEthernetHeader)
        return fmt::format("frame of {} bytes is shorter than an Ethernet header", frame.size());
    if (frame.size() > kMaxFrame) return fmt::format("frame of {} bytes is over the {}-byte limit", frame.size(), kMaxFrame);
    const uint8_t type = header.gso_type & static_cast<uint8_t>(~kGsoEcn);
    if (type == kGsoTcpV4 || type == kGsoTcpV6) return segment_tcp(header, frame, type == kGsoTcpV6, scratch, sink);
    if (type != kGsoNone) return fmt::format("gso_type {:#04x} cannot be completed in software", header.gso_type);
    if ((header.flags & kFlagNeedsCsum) == 0) {
        sink(frame);
        return {};
    }
    const size_t field = size_t{header.csum_start} + header.csum_offset;
    if (field + 2 > frame.size())
        return fmt::format("checksum at csum_start {} + csum_offset {} is past the {}-byte frame", header.csum_start,
                           header.csum_offset, frame.size());
    // The driver left the pseudo-header's sum in the field: summing from
    // csum_start over it gives the full checksum.
    put_be16(frame, field, checksum_finish(checksum_add(0, frame.subspan(header.csum_start))));
    sink(frame);
    return {};
}

}  // namespace minikvm::net
