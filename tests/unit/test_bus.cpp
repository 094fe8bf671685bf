#include <catch2/catch.hpp>

#include <stdexcept>
#include <vector>

#include "vmm/core/bus.h"

namespace {

struct RecordingDevice : minikvm::BusDevice {
    std::vector<std::pair<uint64_t, size_t>> reads, writes;
    uint8_t fill = 0x5a;
    void read(uint64_t offset, std::span<uint8_t> data) override {
        reads.emplace_back(offset, data.size());
        for (auto& b : data) b = fill;
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override { writes.emplace_back(offset, data.size()); }
};

}  // namespace

TEST_CASE("IoBus dispatches to the device owning the range, with relative offsets") {
    minikvm::IoBus bus("io");
    RecordingDevice a, b;
    bus.add(0x3f8, 8, a);
    bus.add(0x60, 5, b);
    uint8_t byte = 0;
    CHECK(bus.read(0x3fd, std::span(&byte, 1)));
    CHECK(byte == 0x5a);
    REQUIRE(a.reads.size() == 1);
    CHECK(a.reads[0].first == 5);
    const uint8_t value = 1;
    CHECK(bus.write(0x64, std::span(&value, 1)));
    REQUIRE(b.writes.size() == 1);
    CHECK(b.writes[0].first == 4);
}

TEST_CASE("IoBus: unclaimed reads are all-ones and writes are dropped") {
    minikvm::IoBus bus("io");
    RecordingDevice a;
    bus.add(0x100, 4, a);
    uint8_t data[4] = {};
    CHECK_FALSE(bus.read(0x200, data));
    CHECK(data[0] == 0xff);
    CHECK(data[3] == 0xff);
    // An access straddling the end of a range belongs to nobody.
    CHECK_FALSE(bus.read(0x102, data));
    CHECK(a.reads.empty());
    CHECK_FALSE(bus.write(0xff, data));
    CHECK(a.writes.empty());
}

TEST_CASE("IoBus refuses overlapping, empty and wrapping ranges") {
    minikvm::IoBus bus("io");
    RecordingDevice a;
    bus.add(0x100, 0x10, a);
    CHECK_THROWS_AS(bus.add(0x10f, 1, a), std::invalid_argument);
    CHECK_THROWS_AS(bus.add(0xf0, 0x11, a), std::invalid_argument);
    CHECK_THROWS_AS(bus.add(0x200, 0, a), std::invalid_argument);
    CHECK_THROWS_AS(bus.add(~0ULL, 2, a), std::invalid_argument);
    CHECK_NOTHROW(bus.add(0x110, 1, a));  // adjacent is fine
    CHECK_NOTHROW(bus.add(0xff, 1, a));
}

TEST_CASE("IoBus ranges can be removed and re-added elsewhere (BAR relocation)") {
    minikvm::IoBus bus("io");
    RecordingDevice a;
    bus.add(0xc000, 0x20, a);
    CHECK(bus.remove(0xc000));
    CHECK_FALSE(bus.remove(0xc000));
    uint8_t byte = 0;
    CHECK_FALSE(bus.read(0xc000, std::span(&byte, 1)));
    bus.add(0xd000, 0x20, a);
    CHECK(bus.read(0xd01f, std::span(&byte, 1)));
}
