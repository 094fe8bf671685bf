#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>

#include "aml_reader.h"
#include "boot/acpi_tables.h"
#include "boot/mp_table.h"
#include "devices/pci_host_bridge.h"

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

// The DSDT's definition block, decoded: every term must end exactly where
// its PkgLength says and the last one exactly at the table's end.
std::vector<aml_reader::Node> dsdt_terms(const std::vector<uint8_t>& blob) {
    size_t fadt = walk(blob)["FACP"];
    size_t dsdt = get<uint64_t>(blob, fadt + 140) - kBase;
    REQUIRE(std::memcmp(blob.data() + dsdt, "DSDT", 4) == 0);
    uint32_t length = get<uint32_t>(blob, dsdt + 4);
    REQUIRE(dsdt + length <= blob.size());
    REQUIRE(byte_sum(blob.data() + dsdt, length) == 0);
    return aml_reader::parse(std::span<const uint8_t>(blob.data() + dsdt + 36, length - 36));
}

const aml_reader::Node& pci0(const std::vector<aml_reader::Node>& terms) {
    const aml_reader::Node* sb = aml_reader::find(terms, "\\_SB_");
    REQUIRE(sb);
    REQUIRE(sb->kind == aml_reader::Node::Kind::kScope);
    const aml_reader::Node* device = aml_reader::find(sb->children, "PCI0");
    REQUIRE(device);
    REQUIRE(device->kind == aml_reader::Node::Kind::kDevice);
    return *device;
}

// The value a Name () in `device` holds.
const aml_reader::Node& named_value(const aml_reader::Node& device, const char* name) {
    const aml_reader::Node* node = aml_reader::find(device.children, name);
    INFO(name);
    REQUIRE(node);
    REQUIRE(node->kind == aml_reader::Node::Kind::kName);
    REQUIRE(node->children.size() == 1);
    return node->children[0];
}

// One decoded resource descriptor (ACPI 6.4): small IO or a Word/DWord/QWord
// address space; the walk stops at the End Tag.
struct Resource {
    std::string kind;  // "io", "bus", "word-io", "dword-memory", "qword-memory"
    uint64_t min, max, length;
    uint8_t general_flags = 0, type_flags = 0;
    bool operator==(const Resource&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Resource& r) {
    return os << r.kind << " " << std::hex << r.min << "-" << r.max << " len " << r.length << " flags "
              << int{r.general_flags} << "/" << int{r.type_flags};
}

std::vector<Resource> decode_resources(const std::vector<uint8_t>& t) {
    std::vector<Resource> out;
    size_t at = 0;
    auto le = [&](size_t offset, size_t width) {
        uint64_t v = 0;
        for (size_t i = 0; i < width; ++i) v |= uint64_t{t.at(at + offset + i)} << (8 * i);
        return v;
    };
    while (true) {
        REQUIRE(at < t.size());
        const uint8_t tag = t[at];
        if (!(tag & 0x80)) {
            const uint8_t item = (tag >> 3) & 0xf, length = tag & 7;
            if (item == 0xf) {  // End Tag: last, and the template sums to zero
                REQUIRE(length == 1);
                CHECK(at + 2 == t.size());
                CHECK(byte_sum(t.data(), t.size()) == 0);
                return out;
            }
            REQUIRE(item == 0x8);  // IO
            REQUIRE(length == 7);
            CHECK(t[at + 1] == 1);  // 16-bit decode
            out.push_back({"io", le(2, 2), le(4, 2), le(7, 1)});
            at += 1 + length;
            continue;
        }
        const size_t length = le(1, 2);
        if (tag == 0x88) {
            REQUIRE(length == 13);
            const uint8_t type = t[at + 3];
            REQUIRE((type == 1 || type == 2));
            CHECK(le(6, 2) == 0);   // granularity
            CHECK(le(12, 2) == 0);  // translation
            out.push_back({type == 2 ? "bus" : "word-io", le(8, 2), le(10, 2), le(14, 2), t[at + 4], t[at + 5]});
        } else if (tag == 0x87) {
            REQUIRE(length == 23);
            REQUIRE(t[at + 3] == 0);  // memory
            CHECK(le(6, 4) == 0);
            CHECK(le(18, 4) == 0);
            out.push_back({"dword-memory", le(10, 4), le(14, 4), le(22, 4), t[at + 4], t[at + 5]});
        } else {
            REQUIRE(tag == 0x8a);
            REQUIRE(length == 43);
            REQUIRE(t[at + 3] == 0);  // memory
            CHECK(le(6, 8) == 0);
            CHECK(le(30, 8) == 0);
            out.push_back({"qword-memory", le(14, 8), le(22, 8), le(38, 8), t[at + 4], t[at + 5]});
        }
        at += 3 + length;
    }
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

TEST_CASE("the DSDT keeps \\_S5 and adds the PCI root bridge \\_SB.PCI0") {
    AcpiConfig config;
    config.s5_sleep_type = 5;
    const auto terms = dsdt_terms(build_acpi_tables(kBase, config));
    REQUIRE(terms.size() == 2);
    const aml_reader::Node* s5 = aml_reader::find(terms, "_S5_");
    REQUIRE(s5);
    REQUIRE(s5->children.at(0).children.size() == 4);
    CHECK(s5->children[0].children[0].value == 5);
    CHECK(s5->children[0].children[1].value == 5);

    const aml_reader::Node& device = pci0(terms);
    CHECK(named_value(device, "_HID").value == 0x030a'd041);  // EisaId ("PNP0A03")
    CHECK(named_value(device, "_UID").value == 0);
    CHECK(named_value(device, "_ADR").value == 0);
    CHECK(named_value(device, "_BBN").value == 0);
}

TEST_CASE("PCI0's _HID is the PNP0A03 EisaId as a DWord") {
    auto blob = build_acpi_tables(kBase, AcpiConfig{});
    const uint8_t hid[] = {0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03};
    CHECK(std::search(blob.begin(), blob.end(), std::begin(hid), std::end(hid)) != blob.end());
}

TEST_CASE("PCI0's _CRS: bus 0, the config ports, and the I/O and memory windows") {
    AcpiConfig config;
    config.pci_memory_window_start = 0xc000'0000;
    config.pci_memory_window_end = 0xe000'0000;
    const auto terms = dsdt_terms(build_acpi_tables(kBase, config));
    const aml_reader::Node& crs = named_value(pci0(terms), "_CRS");
    REQUIRE(crs.kind == aml_reader::Node::Kind::kBuffer);
    const std::vector<Resource> expected{
        {"bus", 0, 0, 1, 0x0c, 0x00},
        {"io", 0xcf8, 0xcf8, 8},
        {"word-io", 0x0000, 0x0cf7, 0x0cf8, 0x0c, 0x03},  // producer, fixed min and max; entire range
        {"word-io", 0x0d00, 0xffff, 0xf300, 0x0c, 0x03},
        {"dword-memory", 0xc000'0000, 0xdfff'ffff, 0x2000'0000, 0x0c, 0x01},  // read-write, non-cacheable
    };
    CHECK(decode_resources(crs.bytes) == expected);  // no 64-bit window: no QWordMemory
}

TEST_CASE("PCI0's _CRS has the 64-bit memory window when there is one") {
    AcpiConfig config;
    config.pci_memory64_window_start = 0x2'4000'0000;  // 9 GiB
    config.pci_memory64_window_end = 0x12'4000'0000;   // + 64 GiB
    const auto terms = dsdt_terms(build_acpi_tables(kBase, config));
    const std::vector<Resource> resources = decode_resources(named_value(pci0(terms), "_CRS").bytes);
    REQUIRE(resources.size() == 6);
    CHECK(resources[4].kind == "dword-memory");  // the 32-bit window stays
    CHECK(resources[5] == Resource{"qword-memory", 0x2'4000'0000, 0x12'3fff'ffff, 0x10'0000'0000, 0x0c, 0x03});
}

TEST_CASE("PCI0's _PRT has one entry per interrupt route") {
    AcpiConfig config;
    config.pci_routes = {{1, 0, 16}, {2, 0, 17}, {3, 1, 18}, {31, 3, 23}};
    const auto terms = dsdt_terms(build_acpi_tables(kBase, config));
    const aml_reader::Node& prt = named_value(pci0(terms), "_PRT");
    REQUIRE(prt.kind == aml_reader::Node::Kind::kPackage);
    REQUIRE(prt.children.size() == config.pci_routes.size());
    for (size_t i = 0; i < config.pci_routes.size(); ++i) {
        const PciInterruptRoute& route = config.pci_routes[i];
        const aml_reader::Node& entry = prt.children[i];
        REQUIRE(entry.kind == aml_reader::Node::Kind::kPackage);
        REQUIRE(entry.children.size() == 4);
        for (const aml_reader::Node& field : entry.children) REQUIRE(field.kind == aml_reader::Node::Kind::kInteger);
        CHECK(entry.children[0].value == (uint64_t{route.device} << 16 | 0xffff));  // any function of the slot
        CHECK(entry.children[1].value == route.pin);
        CHECK(entry.children[2].value == 0);  // no link device: the index is a GSI
        CHECK(entry.children[3].value == route.ioapic_input);
    }
}

TEST_CASE("without PCI devices _PRT is an empty package") {
    const auto terms = dsdt_terms(build_acpi_tables(kBase, AcpiConfig{}));
    const aml_reader::Node& prt = named_value(pci0(terms), "_PRT");
    CHECK(prt.kind == aml_reader::Node::Kind::kPackage);
    CHECK(prt.children.empty());
}

TEST_CASE("the default ACPI PCI windows match the host bridge's") {
    const AcpiConfig config;
    CHECK(config.pci_io_window_start <= PciHostBridge::kIoWindowStart);
    CHECK(config.pci_io_window_end >= PciHostBridge::kIoWindowEnd);
    CHECK(config.pci_memory_window_start == PciHostBridge::kMemoryWindowStart);
    CHECK(config.pci_memory_window_end == PciHostBridge::kMemoryWindowEnd);
}

TEST_CASE("ACPI tables refuse bad PCI routes and windows") {
    AcpiConfig config;
    config.pci_routes = {{32, 0, 16}};
    CHECK_THROWS_AS(build_acpi_tables(kBase, config), std::invalid_argument);
    config.pci_routes = {{1, 4, 16}};
    CHECK_THROWS_AS(build_acpi_tables(kBase, config), std::invalid_argument);
    config.pci_routes = {{1, 0, 24}};
    CHECK_THROWS_AS(build_acpi_tables(kBase, config), std::invalid_argument);

    config = AcpiConfig{};
    config.pci_io_window_start = 0xcfc;  // overlaps the configuration ports
    CHECK_THROWS_AS(build_acpi_tables(kBase, config), std::invalid_argument);
    config = AcpiConfig{};
    config.pci_io_window_end = 0x1'0001;
    CHECK_THROWS_AS(build_acpi_tables(kBase, config), std::invalid_argument);
    config = AcpiConfig{};
    config.pci_memory_window_end = config.pci_memory_window_start;
    CHECK_THROWS_AS(build_acpi_tables(kBase, config), std::invalid_argument);
    config = AcpiConfig{};
    config.pci_memory64_window_start = 0x2'0000'0000;
    config.pci_memory64_window_end = 0x1'0000'0000;  // ends before it starts
    CHECK_THROWS_AS(build_acpi_tables(kBase, config), std::invalid_argument);
}

TEST_CASE("the DSDT describes pvpanic as QEMU0001 with its one I/O port, only when asked") {
    const auto has = [](const std::vector<uint8_t>& blob, std::vector<uint8_t> bytes) {
        return std::search(blob.begin(), blob.end(), bytes.begin(), bytes.end()) != blob.end();
    };
    const std::vector<uint8_t> hid{0x08, '_', 'H', 'I', 'D', 0x0d, 'Q', 'E', 'M', 'U', '0', '0', '0', '1', 0x00};
    // IO (Decode16, 0x505, 0x505, 1, 1) in a resource template.
    const std::vector<uint8_t> port{0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01};
    AcpiConfig config;
    const std::vector<uint8_t> without = build_acpi_tables(kBase, config);
    CHECK_FALSE(has(without, hid));
    config.pvpanic_port = 0x505;
    const std::vector<uint8_t> with = build_acpi_tables(kBase, config);
    CHECK(has(with, {'P', 'E', 'V', 'T'}));
    CHECK(has(with, hid));
    CHECK(has(with, port));
}
