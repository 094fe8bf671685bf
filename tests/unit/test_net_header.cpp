// The virtio-net header as bytes, and the rules a transmitted one must
// follow (virtio/net_header): each rule has a header that breaks it.

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <string>

#include "vmm/backends/net/net_header.h"

using namespace minikvm;
using Catch::Matchers::Contains;

namespace {

constexpr net::Offloads kAllTx{.csum = true, .tso4 = true, .tso6 = true, .ecn = true};
constexpr net::Offloads kNoTx{};

net::Header tso(uint8_t type, uint16_t gso_size = 1448) {
    return net::Header{.flags = net::kFlagNeedsCsum,
                       .gso_type = type,
                       .hdr_len = 54,
                       .gso_size = gso_size,
                       .csum_start = 34,
                       .csum_offset = 16,
                       .num_buffers = 0};
}

}  // namespace

TEST_CASE("net header: 10 bytes, or 12 with MRG_RXBUF, little-endian fields in order", "[net]") {
    CHECK(net::header_size(false) == 10);
    CHECK(net::header_size(true) == 12);

    const net::Header header{.flags = 1,
                             .gso_type = 0x81,
                             .hdr_len = 0x0102,
                             .gso_size = 0x0304,
                             .csum_start = 0x0506,
                             .csum_offset = 0x0708,
                             .num_buffers = 0x090a};
    std::array<uint8_t, 12> bytes{};
    bytes.fill(0xee);
    net::encode(header, std::span(bytes.data(), 10));
    CHECK(bytes == std::array<uint8_t, 12>{1, 0x81, 2, 1, 4, 3, 6, 5, 8, 7, 0xee, 0xee});  // 10 bytes: no num_buffers
    net::encode(header, bytes);
    CHECK(bytes[10] == 0x0a);
    CHECK(bytes[11] == 0x09);

    const net::Header back = net::decode(bytes);
    CHECK(back.flags == 1);
    CHECK(back.gso_type == 0x81);
    CHECK(back.hdr_len == 0x0102);
    CHECK(back.gso_size == 0x0304);
    CHECK(back.csum_start == 0x0506);
    CHECK(back.csum_offset == 0x0708);
    CHECK(back.num_buffers == 0x090a);
    CHECK(net::decode(std::span(bytes.data(), 10)).num_buffers == 0);
}

TEST_CASE("net header: a plain frame passes; its size has limits", "[net]") {
    const net::Header plain{};
    CHECK(net::check_transmit(plain, 60, kNoTx).empty());
    CHECK(net::check_transmit(plain, 14, kNoTx).empty());
    CHECK_THAT(net::check_transmit(plain, 13, kNoTx), Contains("shorter than an Ethernet header"));
    CHECK(net::check_transmit(plain, 65535 + 18, kAllTx).empty());
    CHECK_THAT(net::check_transmit(plain, 65535 + 19, kAllTx), Contains("larger than any MTU"));
    CHECK_THAT(net::check_transmit(tso(net::kGsoTcpV4), net::kMaxFrame + 1, kAllTx), Contains("limit"));
    CHECK(net::check_transmit(tso(net::kGsoTcpV4), net::kMaxFrame, kAllTx).empty());
}

TEST_CASE("net header: a partial checksum needs CSUM and must lie inside the frame", "[net]") {
    net::Header header{.flags = net::kFlagNeedsCsum, .csum_start = 34, .csum_offset = 16};
    CHECK(net::check_transmit(header, 100, kAllTx).empty());
    CHECK_THAT(net::check_transmit(header, 100, kNoTx), Contains("VIRTIO_NET_F_CSUM not negotiated"));
    CHECK(net::check_transmit(header, 52, kAllTx).empty());  // the 2-byte field ends exactly at the end
    CHECK_THAT(net::check_transmit(header, 51, kAllTx), Contains("past the 51-byte frame"));
    header.csum_start = 0xffff;
    header.csum_offset = 0xffff;  // no 16-bit overflow in the sum
    CHECK_THAT(net::check_transmit(header, 60, kAllTx), Contains("past"));
    // Without NEEDS_CSUM the offsets mean nothing.
    header.flags = 0;
    CHECK(net::check_transmit(header, 60, kNoTx).empty());
}

TEST_CASE("net header: each segmentation type needs its HOST_ feature", "[net]") {
    CHECK(net::check_transmit(tso(net::kGsoTcpV4), 3000, kAllTx).empty());
    CHECK(net::check_transmit(tso(net::kGsoTcpV6), 3000, kAllTx).empty());
    CHECK(net::check_transmit(tso(net::kGsoTcpV4 | net::kGsoEcn), 3000, kAllTx).empty());

    CHECK_THAT(net::check_transmit(tso(net::kGsoTcpV4), 3000, {.csum = true, .tso6 = true}),
               Contains("HOST_TSO4 not negotiated"));
    CHECK_THAT(net::check_transmit(tso(net::kGsoTcpV6), 3000, {.csum = true, .tso4 = true}),
               Contains("HOST_TSO6 not negotiated"));
    CHECK_THAT(net::check_transmit(tso(net::kGsoTcpV4 | net::kGsoEcn), 3000, {.csum = true, .tso4 = true}),
               Contains("HOST_ECN not negotiated"));
    CHECK_THAT(net::check_transmit(tso(net::kGsoUdp), 3000, kAllTx), Contains("HOST_UFO is not offered"));
    CHECK_THAT(net::check_transmit(tso(5), 3000, kAllTx), Contains("unknown gso_type 0x05"));
    CHECK_THAT(net::check_transmit(tso(0x7f), 3000, kAllTx), Contains("unknown gso_type"));
    CHECK_THAT(net::check_transmit(tso(net::kGsoNone | net::kGsoEcn), 3000, kAllTx), Contains("NONE with the ECN bit"));
    CHECK_THAT(net::check_transmit(tso(net::kGsoTcpV4, 0), 3000, kAllTx), Contains("gso_size 0"));
    net::Header long_headers = tso(net::kGsoTcpV4);
    long_headers.hdr_len = 3001;
    CHECK_THAT(net::check_transmit(long_headers, 3000, kAllTx), Contains("hdr_len 3001 is past"));
}

TEST_CASE("net header: what goes to the tap keeps only what the device acts on", "[net]") {
    net::Header header{.flags = 0xff, .gso_type = 0, .hdr_len = 7, .gso_size = 9, .csum_start = 1, .csum_offset = 2,
                       .num_buffers = 5};
    net::Header clean = net::sanitized_for_tap(header);
    CHECK(clean.flags == net::kFlagNeedsCsum);
    CHECK(clean.num_buffers == 0);
    CHECK(clean.hdr_len == 0);
    CHECK(clean.gso_size == 0);
    CHECK(clean.csum_start == 1);
    CHECK(clean.csum_offset == 2);

    clean = net::sanitized_for_tap(tso(net::kGsoTcpV6 | net::kGsoEcn));
    CHECK(clean.gso_type == (net::kGsoTcpV6 | net::kGsoEcn));
    CHECK(clean.gso_size == 1448);
    CHECK(clean.hdr_len == 54);
}

TEST_CASE("net header: a received header must match the offloads the tap was allowed", "[net]") {
    const net::Offloads all{.csum = true, .tso4 = true, .tso6 = true, .ecn = true};
    CHECK(net::check_receive(net::Header{}, {}).empty());
    CHECK(net::check_receive(tso(net::kGsoTcpV4 | net::kGsoEcn), all).empty());
    CHECK_THAT(net::check_receive(net::Header{.flags = net::kFlagNeedsCsum}, {}), Contains("GUEST_CSUM"));
    CHECK_FALSE(net::check_receive(tso(net::kGsoTcpV4), {.csum = true, .tso6 = true}).empty());
    CHECK_FALSE(net::check_receive(tso(net::kGsoTcpV6), {.csum = true, .tso4 = true}).empty());
    CHECK_FALSE(net::check_receive(tso(net::kGsoUdp), all).empty());
    CHECK_THAT(net::check_receive(tso(net::kGsoTcpV4 | net::kGsoEcn), {.csum = true, .tso4 = true}), Contains("ECN"));
    // DATA_VALID is fine whatever was negotiated: a driver may ignore it.
    CHECK(net::check_receive(net::Header{.flags = net::kFlagDataValid}, {}).empty());
}

TEST_CASE("net header: without GUEST_CSUM a received header carries no flags", "[net]") {
    const net::Header valid{.flags = net::kFlagDataValid};
    CHECK(net::receive_flags(valid, {}) == 0);  // 5.1.6.3.2: the device MUST set flags to zero
    CHECK(net::receive_flags(valid, {.csum = true}) == net::kFlagDataValid);
    CHECK(net::receive_flags(net::Header{.flags = net::kFlagNeedsCsum}, {.csum = true}) == net::kFlagNeedsCsum);
    // Bits virtio does not define never reach the driver.
    CHECK(net::receive_flags(net::Header{.flags = 0x80 | net::kFlagDataValid}, {.csum = true}) == net::kFlagDataValid);
}
