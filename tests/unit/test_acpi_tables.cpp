#include <catch2/catch.hpp>

#include <cstring>
#include <map>
#include <string>

#include "boot/acpi_tables.h"
#include "boot/mp_table.h"

using namespace minikvm;

namespace {
constexpr uint64_t kBase = 0xe0000;

template <typename T>
T get(const std::vector<uint8_t>& v, size_t at) {
    T x;
    std::memcpy(&x, v.data() + at, sizeof(T));
    return x;
}

// Follows RSDP -> XSDT -> tables the way a kernel does, checking checksums.
std::map<std::string, size_t> walk(const std::vector<uint8_t>& blob) {
    std::map<std::string, size_t> tables;
    REQUIRE(std::memcmp(blob.data(), "RSD PTR ", 8) == 0);
    REQUIRE(byte_sum(blob.data(), 20) == 0);
    REQUIRE(byte_sum(blob.data(), 36) == 0);
    REQUIRE(blob[15] == 2);
    size_t xsdt = get<uint64_t>(blob, 24) - kBase;
    REQUIRE(std::memcmp(blob.data() + xsdt, "XSDT", 4) == 0);
    uint32_t xsdt_length = get<uint32_t>(blob, xsdt + 4);
    REQUIRE(byte_sum(blob.data() + xsdt, xsdt_length) == 0);
    for (size_t at = xsdt + 36; at < xsdt + xsdt_length; at += 8) {
        size_t table = get<uint64_t>(blob, at) - kBase;
        uint32_t length = get<uint32_t>(blob, table + 4);
        REQUIRE(table + length <= blob.size());
        CHECK(byte_sum(blob.data() + table, length) == 0);
        tables[std::string(reinterpret_cast<const char*>(blob.data() + table), 4)] = table;
    }
    return tables;
}
}  // namespace

TEST_CASE("ACPI tables chain from the RSDP with valid checksums") {
    AcpiConfig config;
    config.cpu_count = 2;
    config.ioapic_id = 2;
    config.pm1a_event_port = 0x600;
    config.pm1a_control_port = 0x604;
    auto blob = build_acpi_tables(kBase, config);
    auto tables = walk(blob);
    REQUIRE(tables.count("FACP"));
    REQUIRE(tables.count("APIC"));

    size_t fadt = tables["FACP"];
    CHECK(get<uint32_t>(blob, fadt + 4) == 276);
    CHECK((get<uint32_t>(blob, fadt + 112) & (1U << 20)) == 0);  // not hardware-reduced: keeps the PIC/ISA IRQs
    CHECK(get<uint32_t>(blob, fadt + 64) == 0x604);               // PM1a control block
    CHECK(blob[fadt + 172] == 1);                                 // X_PM1a_CNT in I/O space
    CHECK(get<uint64_t>(blob, fadt + 176) == 0x604);
    CHECK((get<uint16_t>(blob, fadt + 109) & 0x2) == 0);  // no i8042 to probe
    CHECK(get<uint16_t>(blob, fadt + 46) == 9);            // SCI never on the timer's IRQ 0
    size_t dsdt = get<uint64_t>(blob, fadt + 140) - kBase;
    CHECK(std::memcmp(blob.data() + dsdt, "DSDT", 4) == 0);
    CHECK(byte_sum(blob.data() + dsdt, get<uint32_t>(blob, dsdt + 4)) == 0);
    const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, 5, 0x0a, 5, 0, 0};
    CHECK(std::memcmp(blob.data() + dsdt + 36, s5, sizeof(s5)) == 0);
}

TEST_CASE("the MADT lists every vCPU's local APIC and the IOAPIC") {
    AcpiConfig config;
    config.cpu_count = 3;
    config.ioapic_id = 3;
    auto blob = build_acpi_tables(kBase, config);
    size_t madt = walk(blob)["APIC"];
    uint32_t length = get<uint32_t>(blob, madt + 4);
    CHECK(get<uint32_t>(blob, madt + 36) == kLapicAddress);
    int cpus = 0, ioapics = 0, nmis = 0;
    for (size_t at = madt + 44; at < madt + length; at += blob[at + 1]) {
        REQUIRE(blob[at + 1] >= 2);
        if (blob[at] == 0) {
            CHECK(blob[at + 3] == cpus);  // APIC ID
            CHECK(get<uint32_t>(blob, at + 4) == 1);  // enabled
            ++cpus;
        } else if (blob[at] == 1) {
            CHECK(blob[at + 2] == 3);
            CHECK(get<uint32_t>(blob, at + 4) == kIoapicAddress);
            CHECK(get<uint32_t>(blob, at + 8) == 0);
            ++ioapics;
        } else if (blob[at] == 4) {
            CHECK(blob[at + 5] == 1);  // LINT1
            ++nmis;
        }
    }
    CHECK(cpus == 3);
    CHECK(ioapics == 1);
    CHECK(nmis == 1);
}

TEST_CASE("ACPI tables refuse impossible CPU counts") {
    AcpiConfig config;
    config.cpu_count = 0;
    CHECK_THROWS(build_acpi_tables(kBase, config));
    config.cpu_count = 255;
    CHECK_THROWS(build_acpi_tables(kBase, config));
}
