// The MSI-X table and PBA rules: vectors start masked, masked signals are
// pending and delivered exactly once on unmask (per vector and through the
// function mask), the PBA shows them and ignores writes, reserved bits read
// zero, any access width works, bad messages are refused, reset restores
// the power-on state.

#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "devices/msix_capability.h"
#include "devices/msix_table.h"
#include "devices/pci_config_space.h"

using namespace minikvm;

namespace {

struct Rig {
    std::vector<std::pair<uint16_t, MsiMessage>> delivered;
    std::vector<uint16_t> refused;
    MsixTable table{3, [this](uint16_t v, const MsiMessage& m) { delivered.emplace_back(v, m); },
                    [this](uint16_t v, const MsiMessage&) { refused.push_back(v); }};

    void write32(uint64_t offset, uint32_t value) {
        uint8_t bytes[4];
        std::memcpy(bytes, &value, 4);
        table.write_table(offset, bytes);
    }
    uint32_t read32(uint64_t offset) const {
        uint8_t bytes[4];
        table.read_table(offset, bytes);
        uint32_t value;
        std::memcpy(&value, bytes, 4);
        return value;
    }
    uint64_t pba() const {
        uint8_t bytes[8];
        table.read_pba(0, bytes);
        uint64_t value;
        std::memcpy(&value, bytes, 8);
        return value;
    }
    void program(uint16_t vector, uint32_t address, uint32_t data) {
        write32(vector * 16u, address);
        write32(vector * 16u + 4, 0);
        write32(vector * 16u + 8, data);
    }
    void mask(uint16_t vector, bool masked) { write32(vector * 16u + 12, masked ? 1 : 0); }
};

}  // namespace

TEST_CASE("MSI-X: layout, every vector masked at power-on, reserved bits read zero", "[msix]") {
    Rig rig;
    CHECK(rig.table.table_bytes() == 48);
    CHECK(rig.table.pba_bytes() == 8);
    for (uint16_t v = 0; v < 3; ++v) CHECK(rig.read32(v * 16u + 12) == 1);
    rig.write32(12, 0xffffffff);  // only the mask bit sticks
    CHECK(rig.read32(12) == 1);
    rig.write32(12, 0xfffffffe);
    CHECK(rig.read32(12) == 0);
    CHECK(rig.read32(48) == 0);  // past the table
    rig.write32(48, 0x1234);     // ignored
    MsixTable big(65, [](uint16_t, const MsiMessage&) {});
    CHECK(big.pba_bytes() == 16);
    CHECK_THROWS(MsixTable(0, [](uint16_t, const MsiMessage&) {}));
    CHECK_THROWS(MsixTable(2049, [](uint16_t, const MsiMessage&) {}));
}

TEST_CASE("MSI-X: disabled means INTx; enabled and unmasked delivers the programmed message", "[msix]") {
    Rig rig;
    rig.program(1, 0xfee01000, 0x4041);
    rig.mask(1, false);
    CHECK(rig.table.signal(1) == MsixTable::Signal::Disabled);
    rig.table.set_control(true, false);
    CHECK(rig.table.signal(1) == MsixTable::Signal::Delivered);
    REQUIRE(rig.delivered.size() == 1);
    CHECK(rig.delivered[0].first == 1);
    CHECK(rig.delivered[0].second == MsiMessage{0xfee01000, 0x4041});
    CHECK(rig.table.signal(7) == MsixTable::Signal::Refused);  // no such vector
}

TEST_CASE("MSI-X: masked signals are pending, coalesce, and arrive once on unmask", "[msix]") {
    Rig rig;
    rig.program(0, 0xfee00000, 0x30);
    rig.program(2, 0xfee00000, 0x32);
    rig.table.set_control(true, false);
    CHECK(rig.table.signal(0) == MsixTable::Signal::Pending);  // masked since power-on
    CHECK(rig.table.signal(0) == MsixTable::Signal::Pending);
    CHECK(rig.table.signal(2) == MsixTable::Signal::Pending);
    CHECK(rig.pba() == 0b101);
    rig.mask(0, false);
    REQUIRE(rig.delivered.size() == 1);  // once, though signalled twice
    CHECK(rig.delivered[0].second.data == 0x30);
    CHECK(rig.pba() == 0b100);
    rig.mask(0, false);  // unmasking again delivers nothing more
    CHECK(rig.delivered.size() == 1);
    rig.mask(2, false);
    CHECK(rig.delivered.size() == 2);
    CHECK(rig.pba() == 0);
}

TEST_CASE("MSI-X: the function mask holds every vector; clearing it delivers what is pending", "[msix]") {
    Rig rig;
    for (uint16_t v = 0; v < 3; ++v) {
        rig.program(v, 0xfee00000, 0x30 + v);
        rig.mask(v, false);
    }
    rig.table.set_control(true, true);  // enabled with the function masked
    CHECK(rig.table.signal(1) == MsixTable::Signal::Pending);
    CHECK(rig.table.signal(2) == MsixTable::Signal::Pending);
    rig.mask(1, false);  // a vector unmask while the function is masked delivers nothing
    CHECK(rig.delivered.empty());
    rig.mask(2, true);   // vector 2 is now masked on its own
    rig.table.set_control(true, false);
    REQUIRE(rig.delivered.size() == 1);
    CHECK(rig.delivered[0].first == 1);
    CHECK(rig.table.pending(2));
    rig.mask(2, false);
    CHECK(rig.delivered.size() == 2);
    CHECK_FALSE(rig.table.pending(2));
}

TEST_CASE("MSI-X: a vector reprogrammed while pending delivers its new message", "[msix]") {
    Rig rig;
    rig.program(0, 0xfee00000, 0x30);
    rig.table.set_control(true, false);
    CHECK(rig.table.signal(0) == MsixTable::Signal::Pending);
    rig.program(0, 0xfee02000, 0x55);
    rig.mask(0, false);
    REQUIRE(rig.delivered.size() == 1);
    CHECK(rig.delivered[0].second == MsiMessage{0xfee02000, 0x55});
}

TEST_CASE("MSI-X: a message outside the interrupt window is refused, not delivered", "[msix]") {
    Rig rig;
    rig.program(0, 0x12345000, 0x30);  // an ordinary memory address: would be a DMA write
    rig.mask(0, false);
    rig.program(1, 0xfee00000, 0x31);
    rig.write32(16 + 4, 1);  // upper address set
    rig.mask(1, false);
    rig.table.set_control(true, false);
    CHECK(rig.table.signal(0) == MsixTable::Signal::Refused);
    CHECK(rig.table.signal(1) == MsixTable::Signal::Refused);
    CHECK(rig.delivered.empty());
    CHECK(rig.refused == std::vector<uint16_t>{0, 1});
    CHECK(rig.table.refused_count() == 2);
    CHECK_FALSE(rig.table.pending(0));
}

TEST_CASE("MSI-X: a message with reserved data bits is refused", "[msix]") {
    Rig rig;
    rig.table.set_control(true, false);
    const auto try_data = [&](uint32_t data) {
        rig.program(2, 0xfee00000, data);
        rig.mask(2, false);
        return rig.table.signal(2);
    };
    CHECK(try_data(0x0001'0031) == MsixTable::Signal::Refused);  // bit 16
    CHECK(try_data(0x0000'0331) == MsixTable::Signal::Refused);  // delivery mode 011
    CHECK(try_data(0x0000'0631) == MsixTable::Signal::Refused);  // delivery mode 110
    CHECK(rig.delivered.empty());
    CHECK(try_data(0x0000'c131) == MsixTable::Signal::Delivered);  // lowest priority, level, assert: all defined
    CHECK(try_data(0x0000'0431) == MsixTable::Signal::Delivered);  // NMI
    CHECK(rig.refused == std::vector<uint16_t>{2, 2, 2});
}

TEST_CASE("MSI-X: accesses of any width and offset merge bytewise", "[msix]") {
    Rig rig;
    const uint8_t qword[8] = {0x00, 0x10, 0xe0, 0xfe, 0, 0, 0, 0};
    rig.table.write_table(16, qword);  // address and upper address of vector 1 at once
    const uint8_t one = 0x77;
    rig.table.write_table(16 + 8, std::span(&one, 1));
    const uint8_t straddle[3] = {0x12, 0x00, 0x00};  // data's top byte, then vector control
    rig.table.write_table(16 + 11, straddle);
    CHECK(rig.table.message(1) == MsiMessage{0xfee01000, 0x12000077});
    CHECK_FALSE(rig.table.masked(1));
    uint8_t back[5];
    rig.table.read_table(16 + 10, back);
    CHECK(back[0] == 0x00);
    CHECK(back[1] == 0x12);
    CHECK(back[2] == 0x00);
}

TEST_CASE("MSI-X: reset masks every vector, clears pending bits and disables", "[msix]") {
    Rig rig;
    rig.program(0, 0xfee00000, 0x30);
    rig.table.set_control(true, false);
    CHECK(rig.table.signal(0) == MsixTable::Signal::Pending);
    rig.table.reset();
    CHECK_FALSE(rig.table.enabled());
    CHECK_FALSE(rig.table.pending(0));
    CHECK(rig.table.masked(0));
    CHECK(rig.table.message(0) == MsiMessage{});
    CHECK(rig.table.signal(0) == MsixTable::Signal::Disabled);
    CHECK(rig.delivered.empty());
}

TEST_CASE("MSI-X capability: a hardware layout, table and PBA inside a device's BAR", "[msix]") {
    PciConfigSpace config(PciIdentity{.vendor_id = 0x1b36, .device_id = 0x0010});
    std::vector<uint16_t> delivered;
    // As QEMU's NVMe has it: 65 vectors, table at BAR0+0x2000, PBA at BAR0+0x3000.
    const MsixCapability::Layout layout{0, 0x2000, 0, 0x3000, uint8_t{0x80}};
    MsixCapability cap(config, 65, layout, [&](uint16_t v, const MsiMessage&) { delivered.push_back(v); }, {},
                       "nvme");
    CHECK(cap.offset() == 0x80);
    uint8_t header[12];
    config.read(0x80, header);
    uint32_t table, pba;
    std::memcpy(&table, header + 4, 4);
    std::memcpy(&pba, header + 8, 4);
    CHECK(header[0] == MsixCapability::kCapabilityId);
    CHECK((header[2] | header[3] << 8) == 64);
    CHECK(table == 0x2000);
    CHECK(pba == 0x3000);

    // Accesses at BAR offsets: the table at 0x2000, the PBA at 0x3000, zeros elsewhere.
    const auto write32 = [&](uint64_t offset, uint32_t value) {
        uint8_t bytes[4];
        std::memcpy(bytes, &value, 4);
        cap.write(offset, bytes);
    };
    const auto read32 = [&](uint64_t offset) {
        uint8_t bytes[4];
        cap.read(offset, bytes);
        uint32_t value;
        std::memcpy(&value, bytes, 4);
        return value;
    };
    write32(0x2000 + 64 * 16, 0xfee00000);
    write32(0x2000 + 64 * 16 + 8, 0x45);
    CHECK(read32(0x2000 + 64 * 16) == 0xfee00000);
    CHECK(cap.table().message(64) == MsiMessage{0xfee00000, 0x45});
    CHECK(read32(0x1ffc) == 0);
    cap.table().set_control(true, false);
    CHECK(cap.table().signal(64) == MsixTable::Signal::Pending);  // still masked
    CHECK(read32(0x3000 + 8) == 1);                               // vector 64: first bit of the PBA's second qword
    write32(0x2000 + 64 * 16 + 12, 0);
    CHECK(delivered == std::vector<uint16_t>{64});

    // Layouts that cannot be: table and PBA overlapping, unaligned, BAR 6.
    PciConfigSpace other(PciIdentity{});
    const auto build = [&](MsixCapability::Layout l) {
        MsixCapability(other, 65, l, [](uint16_t, const MsiMessage&) {}, {}, "bad");
    };
    CHECK_THROWS_AS(build({0, 0x2000, 0, 0x2100, std::nullopt}), std::invalid_argument);
    CHECK_THROWS_AS(build({0, 0x2004, 0, 0x3000, std::nullopt}), std::invalid_argument);
    CHECK_THROWS_AS(build({6, 0x2000, 0, 0x3000, std::nullopt}), std::invalid_argument);

    // The PBA in a BAR of its own.
    PciConfigSpace split(PciIdentity{});
    MsixCapability apart(split, 8, {2, 0, 4, 0x100, std::nullopt}, [](uint16_t, const MsiMessage&) {}, {}, "apart");
    apart.table().set_control(true, false);
    CHECK(apart.table().signal(3) == MsixTable::Signal::Pending);
    uint8_t bits[8] = {};
    apart.read_pba_bar(0x100, bits);
    CHECK(bits[0] == 0x08);
    apart.read(0x100, bits);  // the table's BAR at that offset holds nothing
    CHECK(bits[0] == 0);
}
