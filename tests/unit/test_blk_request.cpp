// virtio-blk request parsing: every request type, every malformed shape,
// and the used-length accounting of finish_request(). The chains are built
// over local buffers: parsing needs no guest memory and no device.

#include <catch2/catch.hpp>

#include <cstdint>
#include <deque>
#include <limits>
#include <vector>

#include "virtio/blk_request.h"

using namespace minikvm;
using namespace minikvm::blk;
using Catch::Matchers::Contains;

namespace {

constexpr uint64_t kCapacity = 100;  // sectors

Limits limits() {
    Limits l;
    l.capacity = kCapacity;
    l.flush = true;
    l.discard = true;
    l.write_zeroes = true;
    l.seg_max = 4;
    l.size_max = 4096;
    l.max_discard_sectors = 64;
    l.max_discard_segments = 2;
    l.max_write_zeroes_sectors = 32;
    l.max_write_zeroes_segments = 2;
    return l;
}

void put_le(std::vector<uint8_t>& bytes, size_t at, uint64_t value, int count) {
    for (int i = 0; i < count; ++i) bytes[at + i] = static_cast<uint8_t>(value >> (8 * i));
}

std::vector<uint8_t> header(uint32_t type, uint64_t sector) {
    std::vector<uint8_t> bytes(16, 0);
    put_le(bytes, 0, type, 4);
    put_le(bytes, 4, 0xdeadbeef, 4);  // ioprio: ignored
    put_le(bytes, 8, sector, 8);
    return bytes;
}

std::vector<uint8_t> segment(uint64_t sector, uint32_t count, uint32_t flags) {
    std::vector<uint8_t> bytes(16, 0);
    put_le(bytes, 0, sector, 8);
    put_le(bytes, 8, count, 4);
    put_le(bytes, 12, flags, 4);
    return bytes;
}

// A chain over buffers this object owns (a deque never moves its elements).
struct Chain {
    std::deque<std::vector<uint8_t>> storage;
    DescriptorChain chain;

    Chain& readable(std::vector<uint8_t> bytes) {
        storage.push_back(std::move(bytes));
        chain.readable.push_back({0x1000 * storage.size(), storage.back()});
        chain.readable_length += static_cast<uint32_t>(storage.back().size());
        return *this;
    }
    Chain& writable(size_t size, uint8_t fill = 0xcc) {
        storage.emplace_back(size, fill);
        chain.writable.push_back({0x1000 * storage.size(), storage.back()});
        chain.writable_length += static_cast<uint32_t>(size);
        return *this;
    }
    Request parse(const Limits& l = limits()) const { return parse_request(chain, l); }
};

void check_error(const Request& request, uint8_t status, const std::string& text) {
    CHECK(request.kind == Kind::Complete);
    CHECK(request.status == status);
    CHECK_THAT(request.problem, Contains(text));
}

}  // namespace

TEST_CASE("blk request: a read takes the writable bytes before the status as data", "[virtio-blk]") {
    Chain c;
    c.readable(header(kTypeIn, 7)).writable(1024).writable(1);
    Request r = c.parse();
    REQUIRE(r.kind == Kind::Read);
    CHECK(r.sector == 7);
    CHECK(r.data_length == 1024);
    REQUIRE(r.read_buffers.size() == 1);
    CHECK(r.read_buffers[0].data() == c.storage[1].data());
    CHECK(r.read_buffers[0].size() == 1024);

    // Any layout: header split in two, data and status sharing a buffer.
    Chain any;
    std::vector<uint8_t> h = header(kTypeIn, 3);
    any.readable({h.begin(), h.begin() + 5}).readable({h.begin() + 5, h.end()}).writable(512).writable(513);
    r = any.parse();
    REQUIRE(r.kind == Kind::Read);
    CHECK(r.sector == 3);
    CHECK(r.data_length == 1024);
    REQUIRE(r.read_buffers.size() == 2);
    CHECK(r.read_buffers[1].size() == 512);

    // A read of nothing at the very end of the disk is fine.
    Chain empty;
    empty.readable(header(kTypeIn, kCapacity)).writable(1);
    r = empty.parse();
    CHECK(r.kind == Kind::Read);
    CHECK(r.data_length == 0);
}

TEST_CASE("blk request: a write takes the readable bytes after the header", "[virtio-blk]") {
    Chain c;
    c.readable(header(kTypeOut, 98)).readable(std::vector<uint8_t>(512, 1)).readable(std::vector<uint8_t>(512, 2)).writable(1);
    Request r = c.parse();
    REQUIRE(r.kind == Kind::Write);
    CHECK(r.sector == 98);  // sectors 98 and 99: exactly up to the end
    CHECK(r.data_length == 1024);
    REQUIRE(r.write_buffers.size() == 2);
    CHECK(r.write_buffers[1][0] == 2);

    // Header and data in one descriptor.
    std::vector<uint8_t> both = header(kTypeOut, 0);
    both.resize(16 + 512, 9);
    Chain one;
    one.readable(both).writable(1);
    r = one.parse();
    REQUIRE(r.kind == Kind::Write);
    REQUIRE(r.write_buffers.size() == 1);
    CHECK(r.write_buffers[0].size() == 512);
    CHECK(r.write_buffers[0][0] == 9);
}

TEST_CASE("blk request: flush, its legacy synonym, and its feature", "[virtio-blk]") {
    for (uint32_t type : {kTypeFlush, kTypeFlushOut}) {
        Chain c;
        c.readable(header(type, 12345)).writable(1);  // the sector is ignored
        CHECK(c.parse().kind == Kind::Flush);
        Limits no_flush = limits();
        no_flush.flush = false;
        check_error(c.parse(no_flush), kStatusUnsupp, "VIRTIO_BLK_F_FLUSH");
    }
}

TEST_CASE("blk request: GET_ID wants exactly 20 data bytes", "[virtio-blk]") {
    Chain c;
    c.readable(header(kTypeGetId, 0)).writable(20).writable(1);
    CHECK(c.parse().kind == Kind::GetId);
    Chain wrong;
    wrong.readable(header(kTypeGetId, 0)).writable(64).writable(1);
    check_error(wrong.parse(), kStatusIoErr, "GET_ID with 64 data bytes");
}

TEST_CASE("blk request: discard and write zeroes segments", "[virtio-blk]") {
    Chain c;
    c.readable(header(kTypeDiscard, 0)).readable(segment(10, 64, 0)).readable(segment(0, 0, 0)).writable(1);
    Request r = c.parse();
    REQUIRE(r.kind == Kind::Discard);
    REQUIRE(r.segments.size() == 2);
    CHECK(r.segments[0].sector == 10);
    CHECK(r.segments[0].sectors == 64);
    CHECK_FALSE(r.segments[0].unmap);

    Chain wz;
    wz.readable(header(kTypeWriteZeroes, 0)).readable(segment(68, 32, kSegmentFlagUnmap)).writable(1);
    r = wz.parse();
    REQUIRE(r.kind == Kind::WriteZeroes);
    REQUIRE(r.segments.size() == 1);
    CHECK(r.segments[0].unmap);
    CHECK(r.segments[0].sector == 68);

    SECTION("UNMAP on a discard and unknown flags are UNSUPP") {
        Chain unmap;
        unmap.readable(header(kTypeDiscard, 0)).readable(segment(0, 1, kSegmentFlagUnmap)).writable(1);
        check_error(unmap.parse(), kStatusUnsupp, "sets UNMAP");
        Chain flags;
        flags.readable(header(kTypeWriteZeroes, 0)).readable(segment(0, 1, 0)).readable(segment(0, 1, 0x4)).writable(1);
        check_error(flags.parse(), kStatusUnsupp, "segment 1 has unknown flags 0x4");
    }
    SECTION("limits: segments, sectors per segment, the end of the disk") {
        Chain many;
        many.readable(header(kTypeDiscard, 0));
        for (int i = 0; i < 3; ++i) many.readable(segment(0, 1, 0));
        many.writable(1);
        check_error(many.parse(), kStatusIoErr, "3 segments, more than the 2 allowed");
        Chain big;
        big.readable(header(kTypeWriteZeroes, 0)).readable(segment(0, 33, 0)).writable(1);
        check_error(big.parse(), kStatusIoErr, "33 sectors, more than the 32 allowed");
        Chain beyond;
        beyond.readable(header(kTypeDiscard, 0)).readable(segment(90, 11, 0)).writable(1);
        check_error(beyond.parse(), kStatusIoErr, "runs past the end of the disk");
        Chain wrap;
        wrap.readable(header(kTypeDiscard, 0))
            .readable(segment(std::numeric_limits<uint64_t>::max() - 1, 4, 0))
            .writable(1);
        check_error(wrap.parse(), kStatusIoErr, "runs past the end of the disk");
    }
    SECTION("malformed segment lists") {
        Chain none;
        none.readable(header(kTypeDiscard, 0)).writable(1);
        check_error(none.parse(), kStatusIoErr, "0 bytes of segments");
        Chain partial;
        partial.readable(header(kTypeDiscard, 0)).readable(std::vector<uint8_t>(24)).writable(1);
        check_error(partial.parse(), kStatusIoErr, "24 bytes of segments");
        Chain writable;
        writable.readable(header(kTypeDiscard, 0)).readable(segment(0, 1, 0)).writable(8).writable(1);
        check_error(writable.parse(), kStatusIoErr, "9 device-writable bytes");
    }
    SECTION("feature not negotiated, read-only disk") {
        Limits l = limits();
        l.discard = false;
        check_error(c.parse(l), kStatusUnsupp, "DISCARD without its feature");
        l = limits();
        l.read_only = true;
        check_error(c.parse(l), kStatusIoErr, "read-only");
        check_error(wz.parse(l), kStatusIoErr, "read-only");
    }
}

TEST_CASE("blk request: malformed shapes", "[virtio-blk]") {
    SECTION("short header") {
        Chain c;
        c.readable(std::vector<uint8_t>(15)).writable(1);
        check_error(c.parse(), kStatusIoErr, "header is 15 bytes, not 16");
        Chain none;
        none.writable(513);
        check_error(none.parse(), kStatusIoErr, "header is 0 bytes");
    }
    SECTION("missing status, or the status in a readable buffer") {
        Chain c;
        c.readable(header(kTypeIn, 0));
        CHECK(c.parse().kind == Kind::NoStatus);
        Chain readable_status;
        readable_status.readable(header(kTypeOut, 0)).readable(std::vector<uint8_t>(512)).readable({0});
        Request r = readable_status.parse();
        CHECK(r.kind == Kind::NoStatus);
        CHECK_THAT(r.problem, Contains("no device-writable byte"));
    }
    SECTION("sector overflow and out-of-range sectors") {
        for (uint64_t sector : {std::numeric_limits<uint64_t>::max(), uint64_t{1} << 55, kCapacity - 1, kCapacity + 1}) {
            Chain c;
            c.readable(header(kTypeIn, sector)).writable(1024).writable(1);
            check_error(c.parse(), kStatusIoErr, "past the end of the disk");
            Chain w;
            w.readable(header(kTypeOut, sector)).readable(std::vector<uint8_t>(1024)).writable(1);
            check_error(w.parse(), kStatusIoErr, "past the end of the disk");
        }
    }
    SECTION("write to a read-only disk, whatever its shape") {
        Limits l = limits();
        l.read_only = true;
        Chain c;
        c.readable(header(kTypeOut, 0)).readable(std::vector<uint8_t>(512)).writable(1);
        check_error(c.parse(l), kStatusIoErr, "write to a read-only disk");
        Chain read;
        read.readable(header(kTypeIn, 0)).writable(512).writable(1);
        CHECK(read.parse(l).kind == Kind::Read);
    }
    SECTION("data on the wrong side or not in whole sectors") {
        Chain read_with_data;
        read_with_data.readable(header(kTypeIn, 0)).readable(std::vector<uint8_t>(512)).writable(513);
        check_error(read_with_data.parse(), kStatusIoErr, "512 device-readable bytes after the header of a read");
        Chain write_with_room;
        write_with_room.readable(header(kTypeOut, 0)).readable(std::vector<uint8_t>(512)).writable(512).writable(1);
        check_error(write_with_room.parse(), kStatusIoErr, "512 device-writable bytes before the status");
        Chain odd;
        odd.readable(header(kTypeIn, 0)).writable(100).writable(1);
        check_error(odd.parse(), kStatusIoErr, "100 data bytes are not a multiple of 512");
        Chain odd_write;
        odd_write.readable(header(kTypeOut, 0)).readable(std::vector<uint8_t>(513)).writable(1);
        check_error(odd_write.parse(), kStatusIoErr, "513 data bytes");
    }
    SECTION("seg_max and size_max") {
        Chain many;
        many.readable(header(kTypeIn, 0));
        for (int i = 0; i < 5; ++i) many.writable(512);
        many.writable(1);
        check_error(many.parse(), kStatusIoErr, "5 data buffers, more than seg_max 4");
        Chain large;
        large.readable(header(kTypeOut, 0)).readable(std::vector<uint8_t>(8192)).writable(1);
        check_error(large.parse(), kStatusIoErr, "8192-byte data buffer, larger than size_max 4096");
    }
    SECTION("unsupported types, the legacy SCSI command among them") {
        for (uint32_t type : {kTypeScsiCmd, kTypeScsiCmdOut, kTypeGetLifetime, kTypeSecureErase, 7u, 0x8000'0001u, 99u}) {
            Chain c;
            c.readable(header(type, 0)).writable(512).writable(1);
            Request r = c.parse();
            check_error(r, kStatusUnsupp, "unsupported request type");
            CHECK(r.type == type);
        }
    }
}

TEST_CASE("blk request: finish_request writes the status last and accounts every writable byte", "[virtio-blk]") {
    SECTION("a read that produced all its data: data + status") {
        Chain c;
        c.readable(header(kTypeIn, 0)).writable(1024, 0x55).writable(1);
        CHECK(finish_request(c.chain, kStatusOk, 1024) == 1025);
        CHECK(c.storage[1][1023] == 0x55);  // data left as produced
        CHECK(c.storage[2][0] == kStatusOk);
    }
    SECTION("a failed read: the data it did not produce is zeroed") {
        Chain c;
        c.readable(header(kTypeIn, 0)).writable(512, 0x55).writable(513, 0x66);
        CHECK(finish_request(c.chain, kStatusIoErr, 100) == 1025);
        CHECK(c.storage[1][99] == 0x55);
        CHECK(c.storage[1][100] == 0);
        CHECK(c.storage[1][511] == 0);
        CHECK(c.storage[2][511] == 0);
        CHECK(c.storage[2][512] == kStatusIoErr);
    }
    SECTION("a write: the status byte only") {
        Chain c;
        c.readable(header(kTypeOut, 0)).readable(std::vector<uint8_t>(512)).writable(1, 0xcc);
        CHECK(finish_request(c.chain, kStatusOk, 0) == 1);
        CHECK(c.storage[2][0] == kStatusOk);
    }
    SECTION("the status is the last writable byte even after an empty buffer") {
        Chain c;
        c.readable(header(kTypeFlush, 0)).writable(1, 0xcc).writable(0);
        CHECK(finish_request(c.chain, kStatusUnsupp, 0) == 1);
        CHECK(c.storage[1][0] == kStatusUnsupp);
    }
    SECTION("no writable byte: nothing written, used length 0") {
        Chain c;
        c.readable(header(kTypeIn, 0));
        CHECK(finish_request(c.chain, kStatusIoErr, 0) == 0);
        CHECK(c.storage[0] == header(kTypeIn, 0));
    }
}
