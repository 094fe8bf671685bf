#include <catch2/catch.hpp>

#include <cstring>

#include "boot/mp_table.h"

using namespace minikvm;

namespace {
uint32_t u32(const std::vector<uint8_t>& v, size_t at) {
    uint32_t x;
    std::memcpy(&x, v.data() + at, 4);
    return x;
}
uint16_t u16(const std::vector<uint8_t>& v, size_t at) {
    uint16_t x;
    std::memcpy(&x, v.data() + at, 2);
    return x;
}

struct ParsedEntries {
    std::vector<std::vector<uint8_t>> by_type[5];
};

ParsedEntries parse_entries(const std::vector<uint8_t>& blob) {
    ParsedEntries parsed;
    size_t at = 16 + 44;
    while (at < blob.size()) {
        uint8_t type = blob[at];
        size_t length = type == 0 ? 20 : 8;
        parsed.by_type[type].emplace_back(blob.begin() + at, blob.begin() + at + length);
        at += length;
    }
    return parsed;
}
}  // namespace

TEST_CASE("MP floating pointer and table checksums are zero, pointers agree") {
    MpTableConfig config;
    config.cpu_count = 4;
    config.cpu_signature = 0x806f8;
    config.cpu_features = 0x178bfbff;
    auto blob = build_mp_table(0xf0000, config);
    REQUIRE(std::memcmp(blob.data(), "_MP_", 4) == 0);
    CHECK(u32(blob, 4) == 0xf0010);  // table right after the 16-byte pointer
    CHECK(blob[8] == 1);
    CHECK(blob[9] == 4);
    CHECK(byte_sum(blob.data(), 16) == 0);
    REQUIRE(std::memcmp(blob.data() + 16, "PCMP", 4) == 0);
    uint16_t table_length = u16(blob, 16 + 4);
    CHECK(table_length == blob.size() - 16);
    CHECK(byte_sum(blob.data() + 16, table_length) == 0);
    CHECK(u32(blob, 16 + 36) == kLapicAddress);
}

TEST_CASE("MP table lists every CPU, both buses, the IOAPIC and ISA routing") {
    MpTableConfig config;
    config.cpu_count = 3;
    auto blob = build_mp_table(0xf0000, config);
    auto entries = parse_entries(blob);
    uint16_t entry_count = u16(blob, 16 + 34);

    REQUIRE(entries.by_type[0].size() == 3);
    CHECK(entries.by_type[0][0][1] == 0);
    CHECK(entries.by_type[0][0][3] == 0x3);  // enabled + boot processor
    CHECK(entries.by_type[0][2][1] == 2);
    CHECK(entries.by_type[0][2][3] == 0x1);  // enabled only

    REQUIRE(entries.by_type[1].size() == 2);
    CHECK(std::memcmp(entries.by_type[1][0].data() + 2, "PCI   ", 6) == 0);
    CHECK(std::memcmp(entries.by_type[1][1].data() + 2, "ISA   ", 6) == 0);

    REQUIRE(entries.by_type[2].size() == 1);
    CHECK(entries.by_type[2][0][1] == 3);  // IOAPIC ID follows the CPUs
    CHECK(u32(entries.by_type[2][0], 4) == kIoapicAddress);

    REQUIRE(entries.by_type[3].size() == 15);  // ISA IRQs 0-15 but the cascade
    for (const auto& entry : entries.by_type[3]) {
        CHECK(entry[4] == kMpIsaBusId);
        CHECK(entry[5] == entry[7]);  // ISA IRQ n -> IOAPIC pin n
        CHECK(entry[5] != 2);
    }
    REQUIRE(entries.by_type[4].size() == 2);
    CHECK(entries.by_type[4][0][1] == 3);  // LINT0 ExtINT
    CHECK(entries.by_type[4][1][1] == 1);  // LINT1 NMI
    CHECK(entry_count == 3 + 2 + 1 + 15 + 2);
}

TEST_CASE("MP table PCI routes are level-triggered, active-low, device<<2|pin") {
    MpTableConfig config;
    config.pci_routes = {{3, 0, 10}};
    auto entries = parse_entries(build_mp_table(0xf0000, config));
    auto& last = entries.by_type[3].back();
    CHECK(last[4] == kMpPciBusId);
    CHECK(last[5] == (3 << 2 | 0));
    CHECK(last[7] == 10);
    CHECK(last[2] == 0x0f);
}

TEST_CASE("MP table rejects impossible configurations") {
    MpTableConfig config;
    config.cpu_count = 0;
    CHECK_THROWS(build_mp_table(0xf0000, config));
    config.cpu_count = 255;
    CHECK_THROWS(build_mp_table(0xf0000, config));
    config.cpu_count = 1;
    config.pci_routes = {{32, 0, 10}};
    CHECK_THROWS(build_mp_table(0xf0000, config));
}
