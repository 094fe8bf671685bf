// net::complete_offloads: a guest's TSO super-packets and partial checksums
// turned into complete frames, checked with an independent reading of
// RFC 791/793/8200 checksums rather than the code's own helpers' results.

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/backends/net/software_offloads.h"

using namespace minikvm;
using Bytes = std::vector<uint8_t>;

namespace {

void put16(Bytes& b, size_t at, uint16_t v) {
    b[at] = static_cast<uint8_t>(v >> 8);
    b[at + 1] = static_cast<uint8_t>(v);
}
uint16_t get16(const Bytes& b, size_t at) { return static_cast<uint16_t>((b[at] << 8) | b[at + 1]); }
uint32_t get32(const Bytes& b, size_t at) { return (uint32_t{get16(b, at)} << 16) | get16(b, at + 2); }

// The plain RFC 1071 sum, folded, over a byte range: 0xffff when the range
// holds a correct checksum.
uint16_t folded_sum(const Bytes& b, size_t from, size_t to, uint32_t sum = 0) {
    for (size_t i = from; i < to; i += 2) sum += i + 1 < to ? get16(b, i) : static_cast<uint32_t>(b[i] << 8);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(sum);
}

constexpr size_t kL3 = 14;

// Ethernet + IPv4 + TCP (20 bytes each) + payload bytes 0, 1, 2...
Bytes tcp4_frame(size_t payload, uint8_t tcp_flags) {
    Bytes f(kL3 + 20 + 20 + payload, 0);
    put16(f, 12, 0x0800);
    f[kL3] = 0x45;
    put16(f, kL3 + 2, static_cast<uint16_t>(40 + payload));
    put16(f, kL3 + 4, 0x1234);  // id
    f[kL3 + 8] = 64;
    f[kL3 + 9] = 6;
    const uint8_t addresses[8] = {10, 0, 2, 15, 10, 0, 2, 2};
    std::copy(addresses, addresses + 8, f.begin() + kL3 + 12);
    const size_t l4 = kL3 + 20;
    put16(f, l4, 40000);
    put16(f, l4 + 2, 80);
    f[l4 + 4] = 0xff;  // sequence 0xff000000: wraps within the test
    f[l4 + 5] = 0xff;
    f[l4 + 6] = 0xfe;
    f[l4 + 12] = 0x50;
    f[l4 + 13] = tcp_flags;
    for (size_t i = 0; i < payload; ++i) f[l4 + 20 + i] = static_cast<uint8_t>(i);
    return f;
}

// TCP checksum check over IPv4's pseudo-header.
bool tcp4_checksum_ok(const Bytes& f) {
    const size_t l4 = kL3 + 20;
    uint32_t pseudo = get16(f, kL3 + 12) + get16(f, kL3 + 14) + get16(f, kL3 + 16) + get16(f, kL3 + 18);
    pseudo += 6 + static_cast<uint32_t>(f.size() - l4);
    return folded_sum(f, l4, f.size(), pseudo) == 0xffff;
}

// On a copy of `frame`: a partial checksum is filled in where the frame is.
std::vector<Bytes> complete(const net::Header& header, const Bytes& frame, std::string& problem) {
    std::vector<Bytes> out;
    Bytes copy = frame;
    Bytes scratch;
    problem = net::complete_offloads(header, copy, scratch,
                                     [&](std::span<const uint8_t> f) { out.emplace_back(f.begin(), f.end()); });
    return out;
}

}  // namespace

TEST_CASE("software offloads: a TCPv4 super-packet becomes MSS-sized segments with their own headers", "[net]") {
    const uint8_t kAck = 0x10, kPsh = 0x08, kFin = 0x01, kCwr = 0x80;
    const Bytes frame = tcp4_frame(2500, kAck | kPsh | kFin | kCwr);
    net::Header header{.flags = net::kFlagNeedsCsum, .gso_type = net::kGsoTcpV4, .hdr_len = 54, .gso_size = 1000,
                       .csum_start = 34, .csum_offset = 16};
    std::string problem;
    const std::vector<Bytes> segments = complete(header, frame, problem);
    REQUIRE(problem.empty());
    REQUIRE(segments.size() == 3);
    const size_t sizes[3] = {1000, 1000, 500};
    for (size_t i = 0; i < 3; ++i) {
        const Bytes& s = segments[i];
        INFO("segment " << i);
        REQUIRE(s.size() == 54 + sizes[i]);
        CHECK(get16(s, kL3 + 2) == 40 + sizes[i]);
        CHECK(get16(s, kL3 + 4) == 0x1234 + i);
        CHECK(folded_sum(s, kL3, kL3 + 20) == 0xffff);  // IPv4 header checksum
        CHECK(get32(s, kL3 + 20 + 4) == static_cast<uint32_t>(0xfffffe00U + 1000 * i));
        CHECK(tcp4_checksum_ok(s));
        const uint8_t flags = s[kL3 + 20 + 13];
        CHECK((flags & kAck) != 0);
        CHECK(((flags & (kPsh | kFin)) != 0) == (i == 2));
        CHECK(((flags & kCwr) != 0) == (i == 0));
        CHECK(s[54] == static_cast<uint8_t>(1000 * i));  // the right slice of payload
    }
}

TEST_CASE("software offloads: a TCPv6 super-packet is segmented with payload lengths and checksums", "[net]") {
    const size_t l3 = kL3, l4 = l3 + 40, payload = 3000;
    Bytes f(l4 + 20 + payload, 0);
    put16(f, 12, 0x86dd);
    f[l3] = 0x60;
    f[l3 + 6] = 6;
    f[l3 + 7] = 64;
    for (size_t i = 0; i < 32; ++i) f[l3 + 8 + i] = static_cast<uint8_t>(0xa0 + i);
    f[l4 + 12] = 0x50;
    f[l4 + 13] = 0x10;
    for (size_t i = 0; i < payload; ++i) f[l4 + 20 + i] = static_cast<uint8_t>(i * 7);
    net::Header header{.flags = net::kFlagNeedsCsum, .gso_type = net::kGsoTcpV6, .gso_size = 1440};
    std::string problem;
    const std::vector<Bytes> segments = complete(header, f, problem);
    REQUIRE(problem.empty());
    REQUIRE(segments.size() == 3);
    for (const Bytes& s : segments) {
        const uint32_t tcp_length = static_cast<uint32_t>(s.size() - l4);
        CHECK(get16(s, l3 + 4) == tcp_length);
        uint32_t pseudo = 6 + tcp_length;
        for (size_t i = 0; i < 32; i += 2) pseudo += get16(s, l3 + 8 + i);
        CHECK(folded_sum(s, l4, s.size(), pseudo) == 0xffff);
    }
    CHECK(segments[2].size() == l4 + 20 + 120);
}

TEST_CASE("software offloads: a partial checksum is filled in from csum_start", "[net]") {
    // UDP over IPv4 with the pseudo-header sum in the checksum field, as a
    // driver leaves it.
    Bytes f(kL3 + 20 + 8 + 33, 0);
    put16(f, 12, 0x0800);
    f[kL3] = 0x45;
    f[kL3 + 9] = 17;
    const uint8_t addresses[8] = {10, 0, 2, 15, 10, 0, 2, 3};
    std::copy(addresses, addresses + 8, f.begin() + kL3 + 12);
    const size_t l4 = kL3 + 20;
    put16(f, l4 + 4, 8 + 33);
    for (size_t i = 0; i < 33; ++i) f[l4 + 8 + i] = static_cast<uint8_t>(0x41 + i);
    uint32_t pseudo = get16(f, kL3 + 12) + get16(f, kL3 + 14) + get16(f, kL3 + 16) + get16(f, kL3 + 18) + 17 + 41;
    while (pseudo >> 16) pseudo = (pseudo & 0xffff) + (pseudo >> 16);
    put16(f, l4 + 6, static_cast<uint16_t>(pseudo));
    net::Header header{.flags = net::kFlagNeedsCsum, .csum_start = static_cast<uint16_t>(l4), .csum_offset = 6};
    std::string problem;
    const std::vector<Bytes> out = complete(header, f, problem);
    REQUIRE(problem.empty());
    REQUIRE(out.size() == 1);
    uint32_t check = get16(out[0], kL3 + 12) + get16(out[0], kL3 + 14) + get16(out[0], kL3 + 16) +
                     get16(out[0], kL3 + 18) + 17 + 41;
    CHECK(folded_sum(out[0], l4, out[0].size(), check) == 0xffff);
    CHECK(get16(out[0], l4 + 6) != static_cast<uint16_t>(pseudo));

    // Without NEEDS_CSUM the frame goes as it is.
    const std::vector<Bytes> plain = complete(net::Header{}, f, problem);
    REQUIRE(plain.size() == 1);
    CHECK(plain[0] == f);

    // With it, the checksum is stored in the caller's frame, which is what
    // the sink sees: no copy.
    Bytes in_place = f;
    Bytes scratch;
    const uint8_t* seen = nullptr;
    CHECK(net::complete_offloads(header, in_place, scratch, [&](std::span<const uint8_t> g) { seen = g.data(); })
              .empty());
    CHECK(seen == in_place.data());
    CHECK(in_place == out[0]);
    CHECK(scratch.capacity() == 0);
}

TEST_CASE("software offloads: segments are built in the caller's buffer, reused from frame to frame", "[net]") {
    Bytes frame = tcp4_frame(2500, 0x10);
    const net::Header header{.flags = net::kFlagNeedsCsum, .gso_type = net::kGsoTcpV4, .hdr_len = 54,
                             .gso_size = 1000, .csum_start = 34, .csum_offset = 16};
    Bytes scratch;
    std::vector<const uint8_t*> where;
    const auto sink = [&](std::span<const uint8_t> s) { where.push_back(s.data()); };
    REQUIRE(net::complete_offloads(header, frame, scratch, sink).empty());
    REQUIRE(where.size() == 3);
    const uint8_t* const buffer = scratch.data();
    const size_t capacity = scratch.capacity();
    CHECK(capacity >= 54 + 1000);
    for (const uint8_t* w : where) CHECK(w == buffer);
    // A smaller super-packet next: the same storage, nothing allocated.
    Bytes smaller = tcp4_frame(1500, 0x10);
    where.clear();
    REQUIRE(net::complete_offloads(header, smaller, scratch, sink).empty());
    REQUIRE(where.size() == 2);
    CHECK(scratch.data() == buffer);
    CHECK(scratch.capacity() == capacity);
    CHECK(smaller == tcp4_frame(1500, 0x10));  // the super-packet itself is left alone
}

TEST_CASE("software offloads: frames that cannot be completed are refused whole", "[net]") {
    std::string problem;
    net::Header tso{.flags = net::kFlagNeedsCsum, .gso_type = net::kGsoTcpV4, .gso_size = 1000};

    Bytes arp(60, 0);
    put16(arp, 12, 0x0806);
    CHECK(complete(tso, arp, problem).empty());
    CHECK_THAT(problem, Catch::Contains("EtherType 0x0806"));

    Bytes udp = tcp4_frame(100, 0x10);
    udp[kL3 + 9] = 17;
    CHECK(complete(tso, udp, problem).empty());
    CHECK_THAT(problem, Catch::Contains("not TCP"));

    Bytes truncated = tcp4_frame(0, 0x10);
    truncated.resize(kL3 + 20 + 10);
    CHECK(complete(tso, truncated, problem).empty());
    CHECK_THAT(problem, Catch::Contains("truncated TCP header"));

    Bytes options = tcp4_frame(0, 0x10);
    options[kL3 + 20 + 12] = 0xf0;  // 60-byte TCP header in a 40-byte packet
    CHECK(complete(tso, options, problem).empty());
    CHECK_THAT(problem, Catch::Contains("truncated TCP options"));

    net::Header zero = tso;
    zero.gso_size = 0;
    CHECK(complete(zero, tcp4_frame(100, 0x10), problem).empty());
    CHECK_THAT(problem, Catch::Contains("gso_size 0"));

    net::Header past{.flags = net::kFlagNeedsCsum, .csum_start = 50, .csum_offset = 20};
    CHECK(complete(past, tcp4_frame(10, 0x10), problem).empty());
    CHECK_THAT(problem, Catch::Contains("past the"));

    net::Header udp_gso{.gso_type = net::kGsoUdp, .gso_size = 100};
    CHECK(complete(udp_gso, tcp4_frame(10, 0x10), problem).empty());
    CHECK_THAT(problem, Catch::Contains("cannot be completed"));

    CHECK(complete(net::Header{}, Bytes(10, 0), problem).empty());
    CHECK_THAT(problem, Catch::Contains("shorter than an Ethernet header"));
}
