#pragma once
// The virtio-net packet header (virtio 1.2 section 5.1.6, legacy layout)
// that precedes every frame on both queues, and the rules a transmitted one
// must follow. Pure: bytes in, values and verdicts out.
//
//   offset  field        meaning
//   0       flags        NEEDS_CSUM: checksum from csum_start, stored at
//                        csum_start + csum_offset; DATA_VALID (receive only)
//   1       gso_type     NONE, TCPV4, UDP, TCPV6 (+ ECN bit 0x80)
//   2       hdr_len      le16: length of the headers (a hint for TSO)
//   4       gso_size     le16: segment payload size
//   6       csum_start   le16
//   8       csum_offset  le16
//   10      num_buffers  le16, only with MRG_RXBUF: how many receive
//                        buffers one packet spans (driver sets 0 on transmit)
//
// Legacy devices without MRG_RXBUF use 10 bytes, with it 12, in both
// directions (5.1.6.1). The header and the frame after it are one byte
// stream whatever the descriptor layout (ANY_LAYOUT semantics: safe for a
// device to assume, 5.1.6.6 only constrains drivers).

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace minikvm::net {

inline constexpr size_t kHeaderSize = 10;
inline constexpr size_t kMergeableHeaderSize = 12;
inline constexpr size_t kNumBuffersOffset = 10;

inline constexpr uint8_t kFlagNeedsCsum = 1;
inline constexpr uint8_t kFlagDataValid = 2;

inline constexpr uint8_t kGsoNone = 0;
inline constexpr uint8_t kGsoTcpV4 = 1;
inline constexpr uint8_t kGsoUdp = 3;
inline constexpr uint8_t kGsoTcpV6 = 4;
inline constexpr uint8_t kGsoEcn = 0x80;

// An Ethernet frame: at least the 14-byte Ethernet header; at most a 64 KiB
// GSO super-packet (or a 65535-byte MTU) behind an 802.1Q-tagged header.
inline constexpr uint32_t kEthernetHeader = 14;
inline constexpr uint32_t kMaxFrame = 65536 + kEthernetHeader + 4;

struct Header {
    uint8_t flags = 0;
    uint8_t gso_type = kGsoNone;
    uint16_t hdr_len = 0;
    uint16_t gso_size = 0;
    uint16_t csum_start = 0;
    uint16_t csum_offset = 0;
    uint16_t num_buffers = 0;  // meaningful in 12-byte headers only
};

// 10 or 12 bytes, as the negotiated features say.
constexpr size_t header_size(bool mergeable_rx_buffers) {
    return mergeable_rx_buffers ? kMergeableHeaderSize : kHeaderSize;
}

// `bytes` is 10 or 12 bytes long (num_buffers read only from 12).
Header decode(std::span<const uint8_t> bytes);
// Writes the first bytes.size() (10 or 12) bytes of the header.
void encode(const Header& header, std::span<uint8_t> bytes);

// Which offloads one direction may use: on transmit what the driver
// negotiated (CSUM, HOST_TSO4/6, HOST_ECN), on receive what the tap was
// allowed to hand over (GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN).
struct Offloads {
    bool csum = false;
    bool tso4 = false;
    bool tso6 = false;
    bool ecn = false;
};

// Checks a transmitted header against the offloads and the frame that
// follows it (`frame_length`: bytes after the header). Returns "" when the
// packet may go out, else what is wrong, citing the rule, for a log line.
std::string check_transmit(const Header& header, uint32_t frame_length, const Offloads& offloads);

// Checks a header the tap wrote against what it was allowed: "" when the
// driver can take the frame, else why not.
std::string check_receive(const Header& header, const Offloads& offloads);

// The flags byte a received header may carry to the driver: a tap sets
// DATA_VALID whatever it was told, but without GUEST_CSUM the device MUST
// set flags to zero (virtio 1.2 5.1.6.3.2).
uint8_t receive_flags(const Header& header, const Offloads& offloads);

// The header a transmitted packet goes to the tap with: what was checked,
// with the flags the device does not act on (DATA_VALID, unknown bits:
// a device ignores them, 5.1.6.2.2) and num_buffers cleared.
Header sanitized_for_tap(const Header& header);

}  // namespace minikvm::net
