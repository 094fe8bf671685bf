#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>

#include "vmm/core/guest_memory.h"

using minikvm::GuestMemory;

namespace {
constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kGiB = 1ULL << 30;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
}  // namespace

TEST_CASE("guest memory below the hole is one region") {
    auto layout = GuestMemory::layout(256 * kMiB);
    REQUIRE(layout.size() == 1);
    CHECK(layout[0].guest_address == 0);
    CHECK(layout[0].size == 256 * kMiB);
}

TEST_CASE("guest memory larger than 3 GiB skips the 32-bit MMIO hole") {
    auto layout = GuestMemory::layout(4 * kGiB);
    REQUIRE(layout.size() == 2);
    CHECK(layout[0].size == 3 * kGiB);
    CHECK(layout[1].guest_address == 4 * kGiB);
    CHECK(layout[1].size == 1 * kGiB);
    CHECK(layout[1].host_offset == 3 * kGiB);
}

TEST_CASE("GuestMemory bounds checks every edge") {
    GuestMemory memory = GuestMemory::allocate(16 * kMiB);
    const uint64_t size = 16 * kMiB;
    CHECK(memory.span(0, size));
    CHECK(memory.span(size - 1, 1));
    CHECK(memory.span(size, 0));           // empty range at the very end
    CHECK_FALSE(memory.span(size, 1));     // first byte past RAM
    CHECK_FALSE(memory.span(size - 1, 2)); // straddles the end
    CHECK_FALSE(memory.span(0, size + 1));
    CHECK_FALSE(memory.span(kMax, 1));     // address alone out of range
    CHECK_FALSE(memory.span(1, kMax));     // address + length wraps 2^64
    CHECK_FALSE(memory.span(kMax, kMax));
    CHECK_FALSE(memory.span(size + 1, 0));
}

TEST_CASE("GuestMemory never translates across or into the MMIO hole") {
    GuestMemory memory = GuestMemory::allocate(4 * kGiB);  // MAP_NORESERVE: costs nothing
    CHECK(memory.span(3 * kGiB - 1, 1));
    CHECK_FALSE(memory.span(3 * kGiB - 1, 2));  // would run into the hole
    CHECK_FALSE(memory.span(3 * kGiB, 1));
    CHECK_FALSE(memory.span(4 * kGiB - 1, 1));
    CHECK(memory.span(4 * kGiB, 1));
    CHECK(memory.span(5 * kGiB - 1, 1));
    CHECK_FALSE(memory.span(5 * kGiB - 1, 2));
    CHECK_FALSE(memory.span(5 * kGiB, 1));
    CHECK(memory.low_ram_end() == 3 * kGiB);
    // Both regions map to distinct host bytes.
    CHECK(memory.span(4 * kGiB, 1)->data() == memory.host_base() + 3 * kGiB);
}

TEST_CASE("GuestMemory read/write copy only whole in-range ranges") {
    GuestMemory memory = GuestMemory::allocate(16 * kMiB);
    uint8_t data[4] = {1, 2, 3, 4};
    REQUIRE(memory.write(0x1000, data));
    uint8_t back[4] = {};
    REQUIRE(memory.read(0x1000, back));
    CHECK(back[3] == 4);
    CHECK_FALSE(memory.write(16 * kMiB - 2, data));
    CHECK_FALSE(memory.read(kMax - 1, back));
}
