#include <catch2/catch.hpp>

#include <atomic>
#include <array>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "captured_log.h"
#include "test_helpers.h"
#include "boot/mp_table.h"
#include "devices/pci_config_space.h"
#include "devices/pci_device.h"
#include "devices/pci_host_bridge.h"
#include "vmm/core/bus.h"

using namespace minikvm;

namespace {

constexpr PciIdentity kTestIdentity{.vendor_id = 0x1af4,
                                    .device_id = 0x1000,
                                    .class_code = 0x02'00'00,
                                    .revision = 0x01,
                                    .subsystem_vendor_id = 0x1af4,
                                    .subsystem_id = 0x0001};

uint32_t config_read(const PciConfigSpace& config, uint32_t offset, size_t width) {
    uint8_t bytes[4] = {};
    config.read(offset, std::span(bytes, width));
    return test_helpers::from_le(std::span(bytes, width));
}

PciConfigChanges config_write(PciConfigSpace& config, uint32_t offset, size_t width, uint32_t value) {
    uint8_t bytes[4] = {};
    test_helpers::to_le(value, std::span(bytes, width));
    return config.write(offset, std::span<const uint8_t>(bytes, width));
}

using test_helpers::FakeIrq;

struct RecordingDevice : BusDevice {
    std::vector<std::pair<uint64_t, size_t>> reads, writes;
    void read(uint64_t offset, std::span<uint8_t> data) override {
        reads.emplace_back(offset, data.size());
        for (auto& b : data) b = 0x5a;
    }
    void write(uint64_t offset, std::span<const uint8_t> data) override { writes.emplace_back(offset, data.size()); }
};

using test_helpers::CapturedLog;

// One BAR of a TestDevice; outside it so a default argument can use it.
struct TestBarSpec {
    unsigned index;
    PciBarKind kind;
    uint64_t size;
    bool prefetchable = false;
};

// A device model with one handler per BAR.
class TestDevice : public PciDevice {
public:
    using Spec = TestBarSpec;
    explicit TestDevice(std::vector<Spec> specs = {{0, PciBarKind::Io, 32}}) : handlers_(PciConfigSpace::kBarCount) {
        for (const Spec& spec : specs)
            bars_.push_back(PciBar{spec.index, spec.kind, spec.size, handlers_[spec.index], spec.prefetchable});
    }
    PciConfigSpace& config() override { return config_; }
    std::vector<PciBar> bars() override { return bars_; }
    void connect_intx(IrqLine& line) override { intx = &line; }
    void bar_mapping_changed(unsigned index, std::optional<uint64_t> base) override {
        mapping_changes.emplace_back(index, base);
    }
    void pci_address_assigned(PciBdf bdf) override {
        CHECK(intx == nullptr);  // told before its line is connected
        address = bdf;
    }

    RecordingDevice& handler(unsigned index) { return handlers_[index]; }
    IrqLine* intx = nullptr;
    std::optional<PciBdf> address;
    std::vector<std::pair<unsigned, std::optional<uint64_t>>> mapping_changes;

private:
    PciConfigSpace config_{kTestIdentity};
    std::vector<RecordingDevice> handlers_;
    std::vector<PciBar> bars_;
};

// The guest's view: a bridge on an I/O bus, reached with port I/O.
struct PciBus {
    IoBus io{"io"};
    MmioBus mmio{"mmio"};
    std::map<uint32_t, FakeIrq*> irqs;  // by GSI; owned by the bridge
    PciHostBridge bridge;

    explicit PciBus(PciMemory64Window window = {})
        : bridge(io, mmio,
                 [this](uint32_t gsi) {
                     auto line = std::make_unique<FakeIrq>();
                     irqs[gsi] = line.get();
                     return line;
                 },
                 window) {
        io.add(PciHostBridge::kBasePort, PciHostBridge::kPortCount, bridge);
    }

    uint32_t in(uint16_t port, size_t width) {
        uint8_t bytes[4] = {};
        io.read(port, std::span(bytes, width));
        uint32_t value = 0;
        for (size_t i = 0; i < width; ++i) value |= uint32_t{bytes[i]} << (8 * i);
        return value;
    }
    void out(uint16_t port, size_t width, uint32_t value) {
        uint8_t bytes[4] = {};
        for (size_t i = 0; i < width; ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i));
        io.write(port, std::span<const uint8_t>(bytes, width));
    }

    static uint32_t address(unsigned device, uint32_t reg, unsigned bus = 0, unsigned function = 0) {
        return 0x8000'0000u | bus << 16 | device << 11 | function << 8 | (reg & 0xfc);
    }
    // Mechanism #1 as Linux does it: latch the dword, then use the window.
    uint32_t read_config(unsigned device, uint32_t reg, size_t width) {
        out(0xcf8, 4, address(device, reg));
        return in(static_cast<uint16_t>(0xcfc + (reg & 3)), width);
    }
    void write_config(unsigned device, uint32_t reg, size_t width, uint32_t value) {
        out(0xcf8, 4, address(device, reg));
        out(static_cast<uint16_t>(0xcfc + (reg & 3)), width, value);
    }
    // Both registers of a 64-bit BAR, low first as Linux writes them.
    void write_bar64(unsigned device, uint32_t reg, uint64_t value) {
        write_config(device, reg, 4, static_cast<uint32_t>(value));
        write_config(device, reg + 4, 4, static_cast<uint32_t>(value >> 32));
    }
    uint32_t mmio_read32(uint64_t address) {
        uint8_t bytes[4] = {};
        mmio.read(address, bytes);
        return uint32_t{bytes[0]} | uint32_t{bytes[1]} << 8 | uint32_t{bytes[2]} << 16 | uint32_t{bytes[3]} << 24;
    }
};

}  // namespace

// ---------------------------------------------------------------- config space

TEST_CASE("PCI config space: identity and type-0 header and reset values") {
    PciConfigSpace config(kTestIdentity);
    CHECK(config_read(config, 0x00, 2) == 0x1af4);
    CHECK(config_read(config, 0x02, 2) == 0x1000);
    CHECK(config_read(config, 0x04, 2) == 0);  // nothing enabled after reset
    CHECK(config_read(config, 0x06, 2) == 0);
    CHECK(config_read(config, 0x08, 4) == 0x02000001);  // class 02/00/00, revision 1
    CHECK(config_read(config, 0x0e, 1) == 0x00);        // header type 0, single function
    for (uint32_t bar = 0x10; bar < 0x28; bar += 4) CHECK(config_read(config, bar, 4) == 0);
    CHECK(config_read(config, 0x2c, 2) == 0x1af4);
    CHECK(config_read(config, 0x2e, 2) == 0x0001);
    CHECK(config_read(config, 0x30, 4) == 0);  // no expansion ROM
    CHECK(config_read(config, 0x34, 1) == 0);  // no capabilities
    CHECK(config_read(config, 0x3c, 2) == 0);  // line 0, pin 0
    CHECK_THROWS_AS(PciConfigSpace(PciIdentity{.class_code = 0x1'000000}), std::invalid_argument);
}

TEST_CASE("PCI config space: only the writable bits change whatever the guest writes") {
    PciConfigSpace config(kTestIdentity);
    config.declare_bar(0, PciBarKind::Io, 32);
    config.set_interrupt_pin(1);
    std::vector<uint8_t> before(256);
    config.read(0, before);

    SECTION("all-ones, one byte at a time") {
        for (uint32_t offset = 0; offset < 256; ++offset) config_write(config, offset, 1, 0xff);
        std::vector<uint8_t> after(256);
        config.read(0, after);
        for (uint32_t offset = 0; offset < 256; ++offset) {
            INFO("offset " << offset);
            switch (offset) {
            case 0x04: CHECK(after[offset] == 0x07); break;  // I/O, memory, bus master
            case 0x05: CHECK(after[offset] == 0x04); break;  // INTx disable
            case 0x0c: CHECK(after[offset] == 0xff); break;  // cache line size
            case 0x10: CHECK(after[offset] == 0xe1); break;  // BAR0: size mask + I/O bit
            case 0x11: case 0x12: case 0x13: CHECK(after[offset] == 0xff); break;
            case 0x3c: CHECK(after[offset] == 0xff); break;  // interrupt line
            default: CHECK(after[offset] == before[offset]);
            }
        }
    }
    SECTION("zeros as dwords leave the read-only fields as they were") {
        for (uint32_t offset = 0; offset < 256; offset += 4) config_write(config, offset, 4, 0);
        CHECK(config_read(config, 0x00, 4) == 0x1000'1af4);
        CHECK(config_read(config, 0x08, 4) == 0x0200'0001);
        CHECK(config_read(config, 0x10, 4) == 0x1);  // the I/O type bit stays
        CHECK(config_read(config, 0x2c, 4) == 0x0001'1af4);
        CHECK(config_read(config, 0x3d, 1) == 1);  // interrupt pin
    }
}

TEST_CASE("PCI config space: reads and writes of 1/2/4 bytes at every offset") {
    PciConfigSpace config(kTestIdentity);
    config.declare_bar(0, PciBarKind::Io, 32);
    config.set_bar_address(0, 0xc040);
    config.set_interrupt_pin(1);
    config.set_interrupt_line(0x10);
    std::vector<uint8_t> bytes(256);
    config.read(0, bytes);
    auto expected = [&](uint32_t offset, size_t width) {
        uint32_t value = 0;
        for (size_t i = 0; i < width; ++i) value |= uint32_t{offset + i < 256 ? bytes[offset + i] : uint8_t{0xff}} << (8 * i);
        return value;
    };
    for (size_t width : {1u, 2u, 4u})
        for (uint32_t offset = 0; offset < 260; ++offset) {
            INFO("width " << width << " offset " << offset);
            CHECK(config_read(config, offset, width) == expected(offset, width));
        }
    // Far past the end: all-ones, no overflow.
    CHECK(config_read(config, 0xffff'fffe, 4) == 0xffff'ffff);
    // Writes past the end are dropped; one that starts inside keeps its inside part.
    config_write(config, 0x3f, 4, 0xffff'ffff);
    CHECK(config_read(config, 0x3c, 4) == 0x0000'0110);  // 0x3f (max_lat) is read-only
    config_write(config, 0xfe, 4, 0xffff'ffff);
    config_write(config, 0xffff'fffe, 4, 0xffff'ffff);

    SECTION("an unaligned word spans the command and status registers") {
        config.set_status_error(0x0100);  // master data parity error, W1C, in byte 0x07
        config_write(config, 0x05, 2, 0xff04);  // INTx disable; status bits 7:0 are read-only
        CHECK(config_read(config, 0x04, 2) == 0x0400);
        CHECK(config_read(config, 0x06, 2) == 0x0100);
        config_write(config, 0x07, 2, 0xff01);  // clears bit 8; the revision is read-only
        CHECK(config_read(config, 0x06, 4) == 0x0001'0000);  // status 0, revision 1
    }
    SECTION("an unaligned dword spans the reserved bytes, interrupt line and pin") {
        config_write(config, 0x3b, 4, 0xaabb'ccdd);
        CHECK(config_read(config, 0x38, 4) == 0);
        CHECK(config_read(config, 0x3c, 1) == 0xcc);
        CHECK(config_read(config, 0x3d, 1) == 1);
    }
    SECTION("a dword write at the command register touches status as a word would") {
        config.set_status_error(0x2000);
        config_write(config, 0x04, 4, 0x2000'0003);
        CHECK(config_read(config, 0x04, 4) == 0x0000'0003);
    }
}

TEST_CASE("PCI config space: command register write mask and change reports") {
    PciConfigSpace config(kTestIdentity);
    PciConfigChanges changes = config_write(config, 0x04, 2, 0xffff);
    CHECK(config.command() == 0x0407);
    CHECK(changes.io_enable_changed);
    CHECK(changes.memory_enable_changed);
    CHECK(changes.intx_disable_changed);
    CHECK(changes.moved_bars == 0);
    CHECK(changes.decoding_may_have_changed());
    CHECK(config.intx_disabled());

    changes = config_write(config, 0x04, 2, 0x0407);  // same value again: nothing flips
    CHECK_FALSE(changes.decoding_may_have_changed());
    CHECK_FALSE(changes.intx_disable_changed);

    changes = config_write(config, 0x04, 1, 0x06);  // I/O off, memory and bus master on
    CHECK(changes.io_enable_changed);
    CHECK_FALSE(changes.memory_enable_changed);
    CHECK(config.command() == 0x0406);

    changes = config_write(config, 0x3c, 1, 0x0b);  // an unrelated register
    CHECK_FALSE(changes.decoding_may_have_changed());
}

TEST_CASE("PCI config space: status error bits are write-1-to-clear and the rest read-only") {
    PciConfigSpace config(kTestIdentity);
    config.add_capability(0x09, std::vector<uint8_t>{0, 0});
    config.set_interrupt_status(true);
    config.set_status_error(0xf900);
    CHECK(config.status() == 0xf918);

    config_write(config, 0x06, 2, 0x0000);  // writing 0 clears nothing
    CHECK(config.status() == 0xf918);
    config_write(config, 0x06, 2, 0x0800);  // one bit
    CHECK(config.status() == 0xf118);
    config_write(config, 0x07, 1, 0xff);  // the high byte alone
    CHECK(config.status() == 0x0018);
    config_write(config, 0x06, 2, 0xffff);  // interrupt and capability bits do not clear
    CHECK(config.status() == 0x0018);
    config.set_interrupt_status(false);
    CHECK(config.status() == 0x0010);
    CHECK_THROWS_AS(config.set_status_error(0x0008), std::invalid_argument);
}

TEST_CASE("PCI config space: BAR sizing protocol for I/O and memory BARs") {
    PciConfigSpace config(kTestIdentity);
    config.declare_bar(0, PciBarKind::Io, 32);
    config.declare_bar(1, PciBarKind::Memory32, 0x1000);
    config.set_bar_address(0, 0xc020);
    config.set_bar_address(1, 0xc000'1000);

    SECTION("I/O BAR: all-ones reads back the size mask with bit 0 set") {
        const uint32_t original = config_read(config, 0x10, 4);
        CHECK(original == 0xc021);
        CHECK(config_write(config, 0x10, 4, 0xffff'ffff).moved_bars == 0x1);
        CHECK(config_read(config, 0x10, 4) == 0xffff'ffe1);
        config_write(config, 0x10, 4, original);
        CHECK(config_read(config, 0x10, 4) == 0xc021);
        CHECK(config.bar_address(0) == 0xc020);
        config_write(config, 0x10, 4, 0xd000);  // the type bit stays even if written as 0
        CHECK(config_read(config, 0x10, 4) == 0xd001);
        config_write(config, 0x10, 4, 0xd01f);  // bits below the size are not writable
        CHECK(config_read(config, 0x10, 4) == 0xd001);
    }
    SECTION("32-bit memory BAR: all-ones reads back the size mask, type bits 0") {
        const uint32_t original = config_read(config, 0x14, 4);
        CHECK(original == 0xc000'1000);
        CHECK(config_write(config, 0x14, 4, 0xffff'ffff).moved_bars == 0x2);
        CHECK(config_read(config, 0x14, 4) == 0xffff'f000);
        config_write(config, 0x14, 4, original);
        CHECK(config_read(config, 0x14, 4) == original);
        CHECK(config.bar_address(1) == 0xc000'1000);
    }
    SECTION("unimplemented BARs and the expansion ROM read 0 after all-ones") {
        for (uint32_t reg : {0x18u, 0x1cu, 0x20u, 0x24u, 0x30u}) {
            config_write(config, reg, 4, 0xffff'ffff);
            CHECK(config_read(config, reg, 4) == 0);
        }
    }
    SECTION("byte writes move a BAR too") {
        CHECK(config_write(config, 0x11, 1, 0xd0).moved_bars == 0x1);
        CHECK(config.bar_address(0) == 0xd020);
    }
}

TEST_CASE("PCI config space: BAR declarations are checked") {
    PciConfigSpace config(kTestIdentity);
    CHECK_THROWS_AS(config.declare_bar(6, PciBarKind::Io, 32), std::invalid_argument);
    CHECK_THROWS_AS(config.declare_bar(0, PciBarKind::Io, 2), std::invalid_argument);
    CHECK_THROWS_AS(config.declare_bar(0, PciBarKind::Io, 24), std::invalid_argument);
    CHECK_THROWS_AS(config.declare_bar(0, PciBarKind::Io, 512), std::invalid_argument);
    CHECK_THROWS_AS(config.declare_bar(0, PciBarKind::Memory32, 8), std::invalid_argument);
    CHECK_THROWS_AS(config.declare_bar(0, PciBarKind::Memory32, 0), std::invalid_argument);
    CHECK_NOTHROW(config.declare_bar(0, PciBarKind::Io, 4));
    CHECK_NOTHROW(config.declare_bar(1, PciBarKind::Memory32, 16));
    CHECK_NOTHROW(config.declare_bar(2, PciBarKind::Memory32, 0x8000'0000));
    CHECK_THROWS_AS(config.declare_bar(0, PciBarKind::Io, 4), std::invalid_argument);  // twice
    CHECK_THROWS_AS(config.set_bar_address(1, 0xc000'0008), std::invalid_argument);     // unaligned
    CHECK_THROWS_AS(config.set_bar_address(3, 0xc000'0000), std::invalid_argument);     // not declared
    CHECK_THROWS_AS(config.set_interrupt_pin(5), std::invalid_argument);
}

TEST_CASE("PCI config space: where a BAR decodes") {
    PciConfigSpace config(kTestIdentity);
    config.declare_bar(0, PciBarKind::Io, 32);
    config.declare_bar(1, PciBarKind::Memory32, 0x1000);
    config.set_bar_address(0, 0xc000);
    config.set_bar_address(1, 0xc000'0000);
    CHECK_FALSE(config.bar_decode_address(0));  // decoding off after reset
    CHECK_FALSE(config.bar_decode_address(1));
    CHECK_FALSE(config.bar_decode_address(2));  // not declared

    config_write(config, 0x04, 2, PciConfigSpace::kCommandIoEnable);
    CHECK(config.bar_decode_address(0) == 0xc000u);
    CHECK_FALSE(config.bar_decode_address(1));  // memory needs its own bit
    config_write(config, 0x04, 2, PciConfigSpace::kCommandIoEnable | PciConfigSpace::kCommandMemoryEnable);
    CHECK(config.bar_decode_address(1) == 0xc000'0000u);

    config_write(config, 0x10, 4, 0xffff'ffff);  // sizing: never decoded
    config_write(config, 0x14, 4, 0xffff'ffff);
    CHECK_FALSE(config.bar_decode_address(0));
    CHECK_FALSE(config.bar_decode_address(1));
    config_write(config, 0x10, 4, 0x1'ffe0);  // past the 64 KiB of I/O space
    CHECK_FALSE(config.bar_decode_address(0));
    config_write(config, 0x10, 4, 0xffe0);  // the last 32 ports: fine
    CHECK(config.bar_decode_address(0) == 0xffe0u);
    config_write(config, 0x10, 4, 0);  // address 0 means unassigned
    CHECK_FALSE(config.bar_decode_address(0));
    config_write(config, 0x14, 4, 0xffff'e000);  // memory ending one page below 4 GiB
    CHECK(config.bar_decode_address(1) == 0xffff'e000u);
}

TEST_CASE("PCI config space: 64-bit BARs take two registers and size as one") {
    PciConfigSpace config(kTestIdentity);
    config.declare_bar(0, PciBarKind::Memory64, 0x4000);                      // NVMe-like: 16 KiB
    config.declare_bar(2, PciBarKind::Memory64, 0x1000'0000, true);           // 256 MiB prefetchable
    config.declare_bar(4, PciBarKind::Memory64, 0x2'0000'0000, true);         // 8 GiB prefetchable
    // Type bits 0b100 (64-bit) plus bit 3 when prefetchable; the upper registers hold address bits only.
    CHECK(config_read(config, 0x10, 4) == 0x4);
    CHECK(config_read(config, 0x18, 4) == 0xc);
    CHECK(config_read(config, 0x20, 4) == 0xc);
    for (uint32_t upper : {0x14u, 0x1cu, 0x24u}) CHECK(config_read(config, upper, 4) == 0);

    // The sizing protocol: all-ones to the low register, read; then the high one.
    const auto size_mask = [&](uint32_t reg) {
        config_write(config, reg, 4, 0xffff'ffff);
        config_write(config, reg + 4, 4, 0xffff'ffff);
        return uint64_t{config_read(config, reg + 4, 4)} << 32 | config_read(config, reg, 4);
    };
    CHECK(size_mask(0x10) == 0xffff'ffff'ffff'c004);
    CHECK(size_mask(0x18) == 0xffff'ffff'f000'000c);
    CHECK(size_mask(0x20) == 0xffff'fffe'0000'000c);  // past 4 GiB: no address bits in the low register
    CHECK(~(size_mask(0x20) & ~uint64_t{0xf}) + 1 == 0x2'0000'0000);

    // Any address aligned to the size sticks, across both registers.
    config_write(config, 0x20, 4, 0x1234'5678);  // below 8 GiB: nothing but the type bits
    config_write(config, 0x24, 4, 0x0000'0013);  // bit 32 is below 8 GiB too
    CHECK(config_read(config, 0x20, 4) == 0xc);
    CHECK(config_read(config, 0x24, 4) == 0x12);
    CHECK(config.bar_address(4) == 0x12'0000'0000);

    SECTION("a write to the upper register moves the BAR it belongs to") {
        config.set_bar_address(0, 0x10'0000'4000);
        CHECK(config_read(config, 0x10, 4) == 0x4004);
        CHECK(config_read(config, 0x14, 4) == 0x10);
        CHECK(config_write(config, 0x14, 4, 0x20).moved_bars == 0x1);
        CHECK(config.bar_address(0) == 0x20'0000'4000);
        CHECK(config_write(config, 0x14, 4, 0x20).moved_bars == 0);  // the same value: nothing moved
    }
    SECTION("accessors: the upper half is no BAR of its own") {
        CHECK(config.bar_kind(0) == PciBarKind::Memory64);
        CHECK(config.bar_size(0) == 0x4000);
        CHECK_FALSE(config.bar_kind(1));
        CHECK(config.bar_size(1) == 0);
        CHECK(config.bar_address(1) == 0);
        CHECK(config.bar_size(4) == 0x2'0000'0000);
        CHECK_FALSE(config.bar_kind(5));
        CHECK_FALSE(config.bar_kind(6));
        CHECK(config.bar_size(6) == 0);
    }
}

TEST_CASE("PCI config space: 64-bit BAR declarations are checked") {
    PciConfigSpace config(kTestIdentity);
    CHECK_THROWS_AS(config.declare_bar(5, PciBarKind::Memory64, 0x1000), std::invalid_argument);  // no register 6
    CHECK_THROWS_AS(config.declare_bar(0, PciBarKind::Memory64, 8), std::invalid_argument);
    CHECK_THROWS_AS(config.declare_bar(0, PciBarKind::Memory64, 0x3000), std::invalid_argument);
    CHECK_THROWS_AS(config.declare_bar(0, PciBarKind::Memory32, 0x1'0000'0000), std::invalid_argument);  // 4 GiB
    CHECK_THROWS_AS(config.declare_bar(0, PciBarKind::Io, 32, true), std::invalid_argument);
    CHECK_FALSE(config.bar_kind(0));  // nothing was declared by the failures

    config.declare_bar(1, PciBarKind::Io, 32);
    CHECK_THROWS_AS(config.declare_bar(0, PciBarKind::Memory64, 0x1000), std::invalid_argument);  // BAR1 is taken
    CHECK_FALSE(config.bar_kind(0));
    config.declare_bar(2, PciBarKind::Memory64, 0x1000);
    CHECK_THROWS_AS(config.declare_bar(3, PciBarKind::Io, 32), std::invalid_argument);  // BAR2's upper half
    CHECK_THROWS_AS(config.declare_bar(2, PciBarKind::Memory32, 0x1000), std::invalid_argument);
    CHECK_THROWS_AS(config.declare_bar(3, PciBarKind::Memory64, 0x1000), std::invalid_argument);
    CHECK_THROWS_AS(config.set_bar_address(3, 0), std::invalid_argument);
    config.declare_bar(4, PciBarKind::Memory64, uint64_t{1} << 63, true);  // the largest there is
    CHECK(config_read(config, 0x24, 4) == 0);
    config_write(config, 0x24, 4, 0xffff'ffff);
    CHECK(config_read(config, 0x24, 4) == 0x8000'0000);
    CHECK(config_read(config, 0x20, 4) == 0xc);

    config.set_bar_address(2, 0xff'ffff'f000);
    CHECK(config.bar_address(2) == 0xff'ffff'f000);
    CHECK_THROWS_AS(config.set_bar_address(2, 0x1'0000'0800), std::invalid_argument);  // unaligned
    CHECK_THROWS_AS(config.set_bar_address(1, 0x1'0000), std::invalid_argument);       // past the port space
    CHECK_NOTHROW(config.set_bar_address(1, 0xffe0));                                   // the last 32 ports

    PciConfigSpace memory32(kTestIdentity);
    memory32.declare_bar(0, PciBarKind::Memory32, 0x1000, true);
    CHECK(config_read(memory32, 0x10, 4) == 0x8);  // prefetchable, 32-bit
    CHECK_THROWS_AS(memory32.set_bar_address(0, 0x1'0000'0000), std::invalid_argument);  // past 4 GiB
    CHECK_NOTHROW(memory32.set_bar_address(0, 0xffff'f000));
}

TEST_CASE("PCI config space: where a 64-bit BAR decodes") {
    PciConfigSpace config(kTestIdentity);
    config.declare_bar(0, PciBarKind::Memory64, 0x4000);
    config.declare_bar(2, PciBarKind::Memory64, 0x2'0000'0000);  // 8 GiB
    config.set_bar_address(0, 0x10'0000'0000);
    config.set_bar_address(2, 0x20'0000'0000);
    CHECK_FALSE(config.bar_decode_address(0));  // decoding off after reset
    config_write(config, 0x04, 2, PciConfigSpace::kCommandIoEnable);
    CHECK_FALSE(config.bar_decode_address(0));  // memory needs its own bit
    config_write(config, 0x04, 2, PciConfigSpace::kCommandMemoryEnable);
    CHECK(config.bar_decode_address(0) == 0x10'0000'0000u);
    CHECK(config.bar_decode_address(2) == 0x20'0000'0000u);
    CHECK_FALSE(config.bar_decode_address(1));  // an upper half decodes nothing of its own

    // Sizing either register, in either order, stops decoding until restored.
    config_write(config, 0x10, 4, 0xffff'ffff);
    CHECK_FALSE(config.bar_decode_address(0));
    config_write(config, 0x14, 4, 0xffff'ffff);
    CHECK_FALSE(config.bar_decode_address(0));
    config_write(config, 0x10, 4, 0);
    CHECK_FALSE(config.bar_decode_address(0));  // the upper register is still all-ones
    config_write(config, 0x14, 4, 0x10);
    CHECK(config.bar_decode_address(0) == 0x10'0000'0000u);
    config_write(config, 0x10, 4, 0x8000);
    CHECK(config.bar_decode_address(0) == 0x10'0000'8000u);
    config_write(config, 0x14, 4, 0);
    CHECK(config.bar_decode_address(0) == 0x8000u);  // a 64-bit BAR may sit below 4 GiB
    config_write(config, 0x10, 4, 0);
    CHECK_FALSE(config.bar_decode_address(0));  // address 0 means unassigned
    config_write(config, 0x10, 4, 0xffff'c000);
    CHECK_FALSE(config.bar_decode_address(0));  // the low register's sizing pattern, whatever the upper one holds
    config_write(config, 0x10, 4, 0xffff'8000);
    CHECK(config.bar_decode_address(0) == 0xffff'8000u);  // one below it is an address: 32-bit BARs could not go there

    // Past 4 GiB of size only the upper register has address bits.
    config_write(config, 0x1c, 4, 0xffff'fffe);
    CHECK_FALSE(config.bar_decode_address(2));  // the sizing pattern: it would end at 2^64
    config_write(config, 0x1c, 4, 0xffff'fffc);
    CHECK(config.bar_decode_address(2) == 0xffff'fffc'0000'0000u);
    config_write(config, 0x1c, 4, 0);
    CHECK_FALSE(config.bar_decode_address(2));  // address 0
}

TEST_CASE("PCI config space: interrupt line is writable and interrupt pin read-only") {
    PciConfigSpace config(kTestIdentity);
    config.set_interrupt_pin(1);
    config.set_interrupt_line(16);
    CHECK(config_read(config, 0x3c, 2) == 0x0110);
    config_write(config, 0x3c, 2, 0x040b);
    CHECK(config_read(config, 0x3c, 1) == 0x0b);
    CHECK(config_read(config, 0x3d, 1) == 0x01);
    config_write(config, 0x3d, 1, 0x00);
    CHECK(config_read(config, 0x3d, 1) == 0x01);
}

TEST_CASE("PCI config space: capabilities are linked from 0x34 and flagged in status") {
    PciConfigSpace config(kTestIdentity);
    CHECK((config.status() & PciConfigSpace::kStatusCapabilitiesList) == 0);
    CHECK(config_read(config, 0x34, 1) == 0);

    const std::vector<uint8_t> body{0x11, 0x22, 0x33};
    const std::vector<uint8_t> mask{0x00, 0xff, 0x0f};
    const uint8_t first = config.add_capability(0x09, body, mask);
    CHECK(first == 0x40);
    CHECK((config.status() & PciConfigSpace::kStatusCapabilitiesList) != 0);
    CHECK(config_read(config, 0x34, 1) == 0x40);
    CHECK(config_read(config, 0x40, 4) == 0x2211'0009);  // ID 9, next 0, body
    CHECK(config_read(config, 0x44, 1) == 0x33);

    const uint8_t second = config.add_capability(0x11, std::vector<uint8_t>(10, 0));
    CHECK(second == 0x48);  // 0x40 + 5 bytes, rounded up to a dword
    CHECK(config_read(config, 0x41, 1) == 0x48);  // first now points at second
    CHECK(config_read(config, 0x48, 2) == 0x0011);
    CHECK(config_read(config, 0x34, 1) == 0x40);  // the head stays

    // ID and next are read-only; the body follows its mask.
    config_write(config, 0x40, 4, 0xffff'ffff);
    config_write(config, 0x44, 1, 0xff);
    CHECK(config_read(config, 0x40, 4) == 0xff11'4809);
    CHECK(config_read(config, 0x44, 1) == 0x3f);
    config_write(config, 0x48, 4, 0xffff'ffff);  // a body without a mask is read-only
    CHECK(config_read(config, 0x48, 4) == 0x0000'0011);

    // Walk the list the way a guest does.
    std::vector<uint8_t> ids;
    for (uint32_t at = config_read(config, 0x34, 1); at != 0; at = config_read(config, at + 1, 1))
        ids.push_back(static_cast<uint8_t>(config_read(config, at, 1)));
    CHECK(ids == std::vector<uint8_t>{0x09, 0x11});

    CHECK_THROWS_AS(config.add_capability(0x09, body, std::vector<uint8_t>{0xff}), std::invalid_argument);
    CHECK(config.add_capability(0x05, std::vector<uint8_t>(0xa0, 0)) == 0x54);  // ends at 0xf6
    CHECK_THROWS_AS(config.add_capability(0x05, std::vector<uint8_t>(8, 0)), std::length_error);
    CHECK(config.add_capability(0x05, std::vector<uint8_t>(6, 0)) == 0xf8);  // exactly to the end
}

TEST_CASE("PCI config space: capabilities at given offsets, as an assigned device has them") {
    PciConfigSpace config(kTestIdentity);
    // The order a device lists them need not be the order of their offsets.
    config.add_capability_at(0x70, 0x10, std::vector<uint8_t>(0x3a, 0));  // PCIe: 0x70-0xab
    config.add_capability_at(0x40, 0x01, std::vector<uint8_t>{1, 2, 3, 4, 5, 6});  // PM: 0x40-0x47
    std::vector<uint8_t> ids, offsets;
    for (uint32_t at = config_read(config, 0x34, 1); at != 0; at = config_read(config, at + 1, 1)) {
        ids.push_back(static_cast<uint8_t>(config_read(config, at, 1)));
        offsets.push_back(static_cast<uint8_t>(at));
    }
    CHECK(ids == std::vector<uint8_t>{0x10, 0x01});
    CHECK(offsets == std::vector<uint8_t>{0x70, 0x40});
    CHECK(config_read(config, 0x42, 2) == 0x0201);

    // Overlaps, misalignment and ranges outside 0x40-0xff are refused.
    CHECK_THROWS_AS(config.add_capability_at(0x44, 0x05, std::vector<uint8_t>(2, 0)), std::invalid_argument);
    CHECK_THROWS_AS(config.add_capability_at(0xa8, 0x05, std::vector<uint8_t>(2, 0)), std::invalid_argument);
    CHECK_THROWS_AS(config.add_capability_at(0x6c, 0x05, std::vector<uint8_t>(4, 0)), std::invalid_argument);
    CHECK_THROWS_AS(config.add_capability_at(0x4a, 0x05, std::vector<uint8_t>(2, 0)), std::invalid_argument);
    CHECK_THROWS_AS(config.add_capability_at(0x3c, 0x05, std::vector<uint8_t>(2, 0)), std::invalid_argument);
    CHECK_THROWS_AS(config.add_capability_at(0xfc, 0x05, std::vector<uint8_t>(4, 0)), std::invalid_argument);
    config.add_capability_at(0x48, 0x05, std::vector<uint8_t>(2, 0));  // the gap right after PM fits
    // One placed by add_capability goes after the furthest so far.
    CHECK(config.add_capability(0x11, std::vector<uint8_t>(10, 0)) == 0xac);
}

// ---------------------------------------------------------------- host bridge

TEST_CASE("PCI host bridge: CONFIG_ADDRESS takes dword accesses only") {
    PciBus pci;
    pci.out(0xcf8, 4, 0xffff'ffff);
    CHECK(pci.in(0xcf8, 4) == 0x80ff'fffc);  // reserved bits read 0
    pci.out(0xcf8, 4, 0x8000'0000);
    CHECK(pci.in(0xcf8, 4) == 0x8000'0000);
    for (uint16_t port = 0xcf8; port < 0xcfc; ++port) {
        CHECK(pci.in(port, 1) == 0xff);
        pci.out(port, 1, 0x12);
    }
    for (uint16_t port = 0xcf8; port < 0xcfb; ++port) {
        CHECK(pci.in(port, 2) == 0xffff);
        pci.out(port, 2, 0x1234);
    }
    CHECK(pci.in(0xcf8, 4) == 0x8000'0000);  // no byte or word write reached it

    // Linux's probe for mechanism #1 (pci_check_type1).
    pci.out(0xcfb, 1, 0x01);
    const uint32_t saved = pci.in(0xcf8, 4);
    pci.out(0xcf8, 4, 0x8000'0000);
    CHECK(pci.in(0xcf8, 4) == 0x8000'0000);
    pci.out(0xcf8, 4, saved);
    // ...and its probe for mechanism #2 must fail (byte reads of 0).
    pci.out(0xcfb, 1, 0x00);
    pci.out(0xcf8, 1, 0x00);
    pci.out(0xcfa, 1, 0x00);
    CHECK(pci.in(0xcf8, 1) != 0x00);
    CHECK(pci.in(0xcfa, 1) != 0x00);
}

TEST_CASE("PCI host bridge: 00:00.0 is an Intel host bridge") {
    PciBus pci;
    CHECK(pci.read_config(0, 0x00, 4) == 0x29c0'8086);
    CHECK(pci.read_config(0, 0x08, 4) >> 8 == 0x060000);
    CHECK(pci.read_config(0, 0x0e, 1) == 0x00);
    CHECK(pci.read_config(0, 0x3d, 1) == 0);  // no interrupt
    CHECK(pci.bridge.interrupt_routes().empty());
}

TEST_CASE("PCI host bridge: data window at every width and port for every register") {
    TestDevice device({{0, PciBarKind::Io, 32}, {1, PciBarKind::Memory32, 0x1000}});
    PciBus pci;
    pci.bridge.register_device(device);
    device.config().add_capability(0x09, std::vector<uint8_t>{1, 2, 3, 4, 5, 6});
    PciConfigSpace host_reference(PciHostBridge::kIdentity);

    for (unsigned number : {0u, 1u}) {
        const PciConfigSpace& reference = number == 0 ? host_reference : device.config();
        for (uint32_t reg = 0; reg < 256; reg += 4)
            for (uint32_t byte = 0; byte < 4; ++byte)
                for (size_t width : {1u, 2u, 4u}) {
                    if (byte + width > 4) continue;  // runs past 0xcff: see the next test
                    INFO("device " << number << " register " << reg << " byte " << byte << " width " << width);
                    pci.out(0xcf8, 4, PciBus::address(number, reg));
                    CHECK(pci.in(static_cast<uint16_t>(0xcfc + byte), width) == config_read(reference, reg + byte, width));
                }
    }
}

TEST_CASE("PCI host bridge: accesses running past 0xcff are not the bridge's") {
    PciBus pci;
    pci.out(0xcf8, 4, PciBus::address(0, 0));
    uint8_t bytes[4] = {};
    CHECK_FALSE(pci.io.read(0xcfd, std::span(bytes, 4)));
    CHECK_FALSE(pci.io.read(0xcff, std::span(bytes, 2)));
    CHECK(bytes[0] == 0xff);
    // Called directly (no bus), the bridge still answers all-ones.
    pci.bridge.read(7, std::span(bytes, 4));
    CHECK(bytes[3] == 0xff);
}

TEST_CASE("PCI host bridge: absent functions read all-ones and ignore writes") {
    TestDevice device;
    PciBus pci;
    pci.bridge.register_device(device);
    struct Case {
        const char* what;
        uint32_t address;
    };
    const Case cases[] = {
        {"enable bit clear", PciBus::address(1, 0) & 0x7fff'ffff},
        {"bus 1", PciBus::address(1, 0, 1)},
        {"bus 255", PciBus::address(0, 0, 255)},
        {"function 1 of the bridge", PciBus::address(0, 0, 0, 1)},
        {"function 7 of a device", PciBus::address(1, 0, 0, 7)},
        {"empty slot", PciBus::address(2, 0)},
        {"last slot", PciBus::address(31, 0)},
    };
    for (const Case& c : cases) {
        INFO(c.what);
        for (uint32_t reg = 0; reg < 256; reg += 4) {
            pci.out(0xcf8, 4, c.address | reg);
            for (uint32_t byte = 0; byte < 4; ++byte) {
                CHECK(pci.in(static_cast<uint16_t>(0xcfc + byte), 1) == 0xff);
                if (byte % 2 == 0) CHECK(pci.in(static_cast<uint16_t>(0xcfc + byte), 2) == 0xffff);
            }
            CHECK(pci.in(0xcfc, 4) == 0xffff'ffff);
        }
        // A write that would enable decoding and change the line does nothing.
        pci.out(0xcf8, 4, c.address | 0x04);
        pci.out(0xcfc, 2, 0x0007);
        pci.out(0xcf8, 4, c.address | 0x3c);
        pci.out(0xcfc, 1, 0x05);
        CHECK(device.config().command() == 0);
        CHECK(config_read(device.config(), 0x3c, 1) == 16);
    }
}

TEST_CASE("PCI host bridge: writes through the data window at every width and port") {
    TestDevice device;
    PciBus pci;
    pci.bridge.register_device(device);
    pci.write_config(1, 0x3c, 1, 0x0a);  // byte at 0xcfc
    CHECK(pci.read_config(1, 0x3c, 1) == 0x0a);
    pci.write_config(1, 0x3c, 2, 0xff0b);  // word: line changes, pin does not
    CHECK(pci.read_config(1, 0x3c, 2) == 0x010b);
    pci.write_config(1, 0x3c, 4, 0xffff'ff0c);
    CHECK(pci.read_config(1, 0x3c, 4) == 0x0000'010c);
    pci.write_config(1, 0x0c, 1, 0x10);  // cache line size
    CHECK(pci.read_config(1, 0x0c, 1) == 0x10);
    pci.write_config(1, 0x05, 1, 0x04);  // byte at 0xcfd: INTx disable
    CHECK(device.config().command() == 0x0400);
    pci.write_config(1, 0x06, 2, 0xffff);  // word at 0xcfe: status, nothing to clear
    CHECK(device.config().status() == 0);
    pci.write_config(1, 0x0e, 1, 0x80);  // byte at 0xcfe: header type is read-only
    CHECK(pci.read_config(1, 0x0e, 1) == 0x00);
    pci.write_config(1, 0x0f, 1, 0x40);  // byte at 0xcff: BIST is read-only
    CHECK(pci.read_config(1, 0x0f, 1) == 0x00);
    pci.write_config(1, 0x00, 4, 0);  // identity is read-only
    CHECK(pci.read_config(1, 0x00, 4) == 0x1000'1af4);
}

TEST_CASE("PCI host bridge: slots and interrupt pins/lines and routes for the MP table") {
    std::vector<std::unique_ptr<TestDevice>> devices;
    for (int i = 0; i < 9; ++i) devices.push_back(std::make_unique<TestDevice>());
    PciBus pci;
    for (unsigned i = 0; i < 8; ++i) {
        const PciBdf bdf = pci.bridge.register_device(*devices[i]);
        CHECK(bdf == PciBdf{0, static_cast<uint8_t>(i + 1), 0});
        CHECK(pci.read_config(i + 1, 0x00, 2) == 0x1af4);
        CHECK(pci.read_config(i + 1, 0x3d, 1) == 1);  // INTA#
        CHECK(pci.read_config(i + 1, 0x3c, 1) == 16 + i);
        REQUIRE(devices[i]->intx != nullptr);
    }
    CHECK(PciBdf{0, 3, 0}.to_string() == "00:03.0");

    const std::vector<PciInterruptRoute> routes = pci.bridge.interrupt_routes();
    REQUIRE(routes.size() == 8);
    for (unsigned i = 0; i < 8; ++i) {
        CHECK(routes[i].device == i + 1);
        CHECK(routes[i].pin == 0);
        CHECK(routes[i].ioapic_input == 16 + i);
        CHECK(pci.irqs.count(16 + i) == 1);
    }
    MpTableConfig mp;
    mp.pci_routes = routes;
    CHECK_NOTHROW(build_mp_table(0xf0000, mp));

    CHECK_THROWS_AS(pci.bridge.register_device(*devices[0]), std::invalid_argument);  // twice
    CHECK_THROWS_AS(pci.bridge.register_device(*devices[8]), std::runtime_error);      // out of GSIs
    CHECK(pci.read_config(9, 0x00, 4) == 0xffff'ffff);
}

TEST_CASE("PCI host bridge: BARs get aligned addresses in their windows but stay unmapped") {
    TestDevice a({{0, PciBarKind::Io, 4}, {1, PciBarKind::Io, 256}, {2, PciBarKind::Memory32, 0x10},
                  {3, PciBarKind::Memory32, 0x10'0000}});
    TestDevice b({{5, PciBarKind::Io, 32}});
    PciBus pci;
    pci.bridge.register_device(a);
    pci.bridge.register_device(b);

    CHECK(pci.read_config(1, 0x10, 4) == 0xc001);
    CHECK(pci.read_config(1, 0x14, 4) == 0xc101);  // 256-byte aligned
    CHECK(pci.read_config(1, 0x18, 4) == 0xc000'0000);
    CHECK(pci.read_config(1, 0x1c, 4) == 0xc010'0000);  // 1 MiB aligned
    CHECK(pci.read_config(1, 0x20, 4) == 0);
    CHECK(pci.read_config(2, 0x24, 4) == 0xc201);

    // Decoding is off until the guest enables it, so nothing answers yet.
    CHECK(pci.in(0xc000, 1) == 0xff);
    CHECK(pci.in(0xc201, 1) == 0xff);
    CHECK(pci.mmio_read32(0xc000'0000) == 0xffff'ffff);
    CHECK(a.handler(0).reads.empty());
    CHECK(b.handler(5).reads.empty());
}

TEST_CASE("PCI host bridge: the command register maps and unmaps BARs") {
    TestDevice device({{0, PciBarKind::Io, 32}, {1, PciBarKind::Memory32, 0x1000}});
    PciBus pci;
    pci.bridge.register_device(device);
    RecordingDevice& io = device.handler(0);
    RecordingDevice& memory = device.handler(1);

    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandIoEnable);
    CHECK(pci.in(0xc004, 2) == 0x5a5a);
    REQUIRE(io.reads.size() == 1);
    CHECK(io.reads[0] == std::pair<uint64_t, size_t>{4, 2});
    CHECK(pci.mmio_read32(0xc000'0010) == 0xffff'ffff);  // memory still off
    CHECK(memory.reads.empty());

    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandIoEnable | PciConfigSpace::kCommandMemoryEnable);
    CHECK(pci.mmio_read32(0xc000'0010) == 0x5a5a'5a5a);
    REQUIRE(memory.reads.size() == 1);
    CHECK(memory.reads[0] == std::pair<uint64_t, size_t>{0x10, 4});

    pci.write_config(1, 0x04, 2, 0);
    CHECK(pci.in(0xc004, 2) == 0xffff);
    CHECK(pci.mmio_read32(0xc000'0010) == 0xffff'ffff);
    CHECK(io.reads.size() == 1);
    CHECK(memory.reads.size() == 1);

    pci.write_config(1, 0x04, 1, PciConfigSpace::kCommandIoEnable);  // a byte write works too
    pci.out(0xc01f, 1, 0x42);
    REQUIRE(io.writes.size() == 1);
    CHECK(io.writes[0] == std::pair<uint64_t, size_t>{0x1f, 1});
}

TEST_CASE("PCI host bridge: a relocated BAR moves on the bus") {
    TestDevice device({{0, PciBarKind::Io, 32}, {1, PciBarKind::Memory32, 0x1000}});
    PciBus pci;
    pci.bridge.register_device(device);
    RecordingDevice& io = device.handler(0);
    RecordingDevice& memory = device.handler(1);
    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandIoEnable | PciConfigSpace::kCommandMemoryEnable);

    SECTION("I/O BAR") {
        pci.write_config(1, 0x10, 4, 0xd000);
        CHECK(pci.in(0xc004, 1) == 0xff);  // the old place is empty
        CHECK(io.reads.empty());
        CHECK(pci.in(0xd004, 1) == 0x5a);  // the new place answers, same offset
        REQUIRE(io.reads.size() == 1);
        CHECK(io.reads[0].first == 4);
    }
    SECTION("memory BAR") {
        pci.write_config(1, 0x14, 4, 0xd000'0000);
        CHECK(pci.mmio_read32(0xc000'0000) == 0xffff'ffff);
        CHECK(memory.reads.empty());
        CHECK(pci.mmio_read32(0xd000'0ffc) == 0x5a5a'5a5a);
        REQUIRE(memory.reads.size() == 1);
        CHECK(memory.reads[0].first == 0xffc);
    }
    SECTION("sizing with decoding on unmaps the BAR; restoring maps it back") {
        pci.write_config(1, 0x10, 4, 0xffff'ffff);
        CHECK(pci.read_config(1, 0x10, 4) == 0xffff'ffe1);
        CHECK(pci.in(0xffe0, 1) == 0xff);  // all-ones is not an I/O address
        CHECK(pci.in(0xc000, 1) == 0xff);
        pci.write_config(1, 0x10, 4, 0xc001);
        CHECK(pci.in(0xc000, 1) == 0x5a);
        CHECK(io.reads.size() == 1);
    }
}

TEST_CASE("PCI host bridge: a BAR moved onto a taken range stays unmapped without crashing") {
    TestDevice a;
    TestDevice b;
    PciBus pci;
    RecordingDevice serial;
    pci.io.add(0x3f8, 8, serial);
    pci.bridge.register_device(a);  // BAR0 at 0xc000
    pci.bridge.register_device(b);  // BAR0 at 0xc020
    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandIoEnable);
    pci.write_config(2, 0x04, 2, PciConfigSpace::kCommandIoEnable);
    CapturedLog log;

    SECTION("onto the serial port") {
        CHECK_NOTHROW(pci.write_config(1, 0x10, 4, 0x3e0));
        const auto warnings = log.at_level("warning");
        REQUIRE(warnings.size() == 1);  // one line that says what happened
        CHECK_THAT(warnings[0], Catch::Contains("PCI 00:01.0 BAR0") && Catch::Contains("0x3e0-0x3ff") &&
                                    Catch::Contains("overlaps 0x3f8") && Catch::Contains("unmapped"));
        CHECK(pci.read_config(1, 0x10, 4) == 0x3e1);  // the register holds what the guest wrote
        CHECK(pci.in(0x3f8, 1) == 0x5a);
        CHECK(serial.reads.size() == 1);  // the serial port keeps its ports
        CHECK(pci.in(0x3e0, 1) == 0xff);
        CHECK(pci.in(0xc000, 1) == 0xff);
        CHECK(a.handler(0).reads.empty());
    }
    SECTION("onto another device's BAR") {
        CHECK_NOTHROW(pci.write_config(1, 0x10, 4, 0xc020));
        CHECK(pci.in(0xc020, 1) == 0x5a);
        CHECK(b.handler(0).reads.size() == 1);
        CHECK(a.handler(0).reads.empty());
        // Toggling decoding retries the same place, and fails the same way.
        pci.write_config(1, 0x04, 2, 0);
        CHECK_NOTHROW(pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandIoEnable));
        CHECK(log.at_level("warning").size() == 2);  // one per attempt, none for writes in between
        CHECK(pci.in(0xc020, 1) == 0x5a);
        CHECK(b.handler(0).reads.size() == 2);
        CHECK(a.handler(0).reads.empty());
    }
    SECTION("onto the configuration ports themselves") {
        CHECK_NOTHROW(pci.write_config(1, 0x10, 4, 0xce0));
        CHECK(pci.read_config(0, 0x00, 4) == 0x29c0'8086);  // config access still works
        pci.write_config(1, 0x3c, 1, 0x0a);  // other config writes do not retry the BAR
        CHECK(log.at_level("warning").size() == 1);
        CHECK(a.handler(0).reads.empty());
    }
    // Moved to a free place, the BAR works again.
    pci.write_config(1, 0x10, 4, 0xd000);
    CHECK(pci.in(0xd000, 1) == 0x5a);
    CHECK(a.handler(0).reads.size() == 1);
    CHECK(log.at_level("warning").size() <= 2);
}

TEST_CASE("PCI host bridge: the device hears where its BARs are mapped") {
    using Change = std::pair<unsigned, std::optional<uint64_t>>;
    TestDevice device({{0, PciBarKind::Io, 32}, {1, PciBarKind::Memory32, 0x1000}});
    TestDevice other;
    PciBus pci;
    pci.bridge.register_device(device);
    pci.bridge.register_device(other);  // BAR0 at 0xc020
    CHECK(device.mapping_changes.empty());  // assigned, not mapped

    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandIoEnable);
    CHECK(device.mapping_changes == std::vector<Change>{{0, 0xc000u}});
    device.mapping_changes.clear();

    pci.write_config(1, 0x10, 4, 0xd000);
    CHECK(device.mapping_changes == std::vector<Change>{{0, std::nullopt}, {0, 0xd000u}});
    device.mapping_changes.clear();

    pci.write_config(1, 0x3c, 1, 0x0a);  // nothing to do with BARs
    pci.write_config(1, 0x10, 4, 0xd000);  // the same address again
    CHECK(device.mapping_changes.empty());

    pci.write_config(2, 0x04, 2, PciConfigSpace::kCommandIoEnable);
    CapturedLog log;
    pci.write_config(1, 0x10, 4, 0xc020);  // taken: off the bus, and not back on
    CHECK(device.mapping_changes == std::vector<Change>{{0, std::nullopt}});
    CHECK(log.at_level("warning").size() == 1);
    device.mapping_changes.clear();

    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandMemoryEnable);
    CHECK(device.mapping_changes == std::vector<Change>{{1, 0xc000'0000u}});
    device.mapping_changes.clear();
    pci.write_config(1, 0x04, 2, 0);
    CHECK(device.mapping_changes == std::vector<Change>{{1, std::nullopt}});
}

TEST_CASE("PCI host bridge: INTx follows the device and is gated by INTx disable") {
    TestDevice device;
    PciBus pci;
    pci.bridge.register_device(device);
    REQUIRE(device.intx != nullptr);
    FakeIrq& gsi16 = *pci.irqs.at(16);

    device.intx->set_level(true);
    CHECK(gsi16.level);
    CHECK((pci.read_config(1, 0x06, 2) & PciConfigSpace::kStatusInterrupt) != 0);

    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandIntxDisable);
    CHECK_FALSE(gsi16.level);  // disabled: the line drops...
    CHECK((pci.read_config(1, 0x06, 2) & PciConfigSpace::kStatusInterrupt) != 0);  // ...the status stays
    pci.write_config(1, 0x04, 2, 0);
    CHECK(gsi16.level);

    device.intx->set_level(false);
    CHECK_FALSE(gsi16.level);
    CHECK((pci.read_config(1, 0x06, 2) & PciConfigSpace::kStatusInterrupt) == 0);

    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandIntxDisable);
    device.intx->set_level(true);  // asserted while disabled: nothing reaches the IOAPIC
    CHECK_FALSE(gsi16.level);
    CHECK((pci.read_config(1, 0x06, 2) & PciConfigSpace::kStatusInterrupt) != 0);
}

TEST_CASE("PCI host bridge: a failed registration leaves the bridge unchanged") {
    TestDevice bad_size({{0, PciBarKind::Io, 24}});
    TestDevice too_big({{0, PciBarKind::Memory32, 0x4000'0000}});  // 1 GiB: the window has 512 MiB
    TestDevice good;
    PciBus pci;
    CHECK_THROWS_AS(pci.bridge.register_device(bad_size), std::invalid_argument);
    CHECK_THROWS_AS(pci.bridge.register_device(too_big), std::runtime_error);
    CHECK(pci.bridge.register_device(good) == PciBdf{0, 1, 0});
    CHECK(pci.read_config(1, 0x10, 4) == 0xc001);
    CHECK(pci.bridge.interrupt_routes().size() == 1);
    CHECK(pci.read_config(2, 0x00, 4) == 0xffff'ffff);
}

TEST_CASE("PCI host bridge: destroying it takes its BARs off the buses") {
    TestDevice device({{0, PciBarKind::Io, 32}, {1, PciBarKind::Memory32, 0x1000}});
    IoBus io("io");
    MmioBus mmio("mmio");
    {
        PciHostBridge bridge(io, mmio, [](uint32_t) { return std::make_unique<FakeIrq>(); });
        bridge.register_device(device);
        const uint8_t select[4] = {0x04, 0x08, 0x00, 0x80};  // 00:01.0 register 4
        const uint8_t enable[2] = {0x03, 0x00};
        bridge.write(0, select);
        bridge.write(4, enable);
        CHECK_THROWS_AS(io.add(0xc000, 32, device.handler(0)), std::invalid_argument);  // mapped
    }
    CHECK_NOTHROW(io.add(0xc000, 32, device.handler(0)));
    CHECK_NOTHROW(mmio.add(0xc000'0000, 0x1000, device.handler(1)));
}

TEST_CASE("PCI host bridge: concurrent config writes and BAR accesses and interrupts") {
    TestDevice device;
    PciBus pci;
    pci.bridge.register_device(device);
    std::atomic<bool> done{false};
    std::atomic<bool> torn{false};
    // vCPU 1 toggles decoding and INTx disable; vCPU 2 hits the BAR; a
    // device thread flips its interrupt. Nothing may crash or tear.
    std::thread toggler([&] {
        for (int i = 0; i < 2000; ++i) pci.write_config(1, 0x04, 2, (i % 2) ? 0x0001 : 0x0400);
        done = true;
    });
    std::thread reader([&] {
        while (!done) {
            const uint32_t value = pci.in(0xc000, 1);
            if (value != 0x5a && value != 0xff) torn = true;
        }
    });
    std::thread interrupter([&] {
        for (unsigned i = 0; !done; ++i) device.intx->set_level(i % 2 == 0);
        device.intx->set_level(false);
    });
    toggler.join();
    reader.join();
    interrupter.join();
    CHECK_FALSE(torn);
    CHECK(device.config().command() == 0x0001);
    CHECK_FALSE(pci.irqs.at(16)->level);
}

TEST_CASE("PCI host bridge: a device hears its address at registration") {
    TestDevice first;
    TestDevice second;
    PciBus pci;
    CHECK_FALSE(first.address);
    pci.bridge.register_device(first);
    pci.bridge.register_device(second);
    CHECK(first.address == PciBdf{0, 1, 0});
    CHECK(second.address == PciBdf{0, 2, 0});
}

TEST_CASE("PCI host bridge: where 64-bit BARs are placed") {
    const PciMemory64Window window{0x10'0000'0000, 0x20'0000'0000};  // 64 GiB at 64 GiB
    PciBus pci(window);
    CHECK(pci.bridge.memory64_window().start == window.start);
    CHECK(pci.bridge.memory64_window().end == window.end);
    TestDevice a({{0, PciBarKind::Memory64, 0x4000},
                  {2, PciBarKind::Memory64, 0x1000'0000, true},
                  {4, PciBarKind::Memory32, 0x1000}});
    pci.bridge.register_device(a);
    CHECK(pci.read_config(1, 0x10, 4) == 0xc000'0004);  // small: in the 32-bit window
    CHECK(pci.read_config(1, 0x14, 4) == 0);
    CHECK(pci.read_config(1, 0x18, 4) == 0x0000'000c);  // 256 MiB: in the 64-bit window, prefetchable
    CHECK(pci.read_config(1, 0x1c, 4) == 0x10);
    CHECK(pci.read_config(1, 0x20, 4) == 0xc000'4000);  // first fit after BAR0

    // Once the 32-bit window is full, a small 64-bit BAR goes above 4 GiB too.
    TestDevice b({{0, PciBarKind::Memory32, 0x1000'0000}, {1, PciBarKind::Memory64, 0x200'0000}});
    pci.bridge.register_device(b);
    CHECK(pci.read_config(2, 0x10, 4) == 0xd000'0000);
    CHECK(pci.read_config(2, 0x14, 4) == 0x1000'0004);  // after device a's 256 MiB
    CHECK(pci.read_config(2, 0x18, 4) == 0x10);
    CHECK(b.config().bar_address(1) == 0x10'1000'0000);
    CHECK(b.config().bar_kind(1) == PciBarKind::Memory64);
}

TEST_CASE("PCI host bridge: a 64-bit BAR that fits nowhere is refused with its size and the windows'") {
    SECTION("too large for the 64-bit window") {
        PciBus pci(PciMemory64Window{0x10'0000'0000, 0x11'0000'0000});  // 4 GiB
        TestDevice gpu({{0, PciBarKind::Memory64, 0x2'0000'0000, true}});  // 8 GiB
        CHECK_THROWS_WITH(pci.bridge.register_device(gpu),
                          "PCI: no room for BAR0, a 64-bit memory BAR of 8 GiB: the 64-bit window is 4 GiB "
                          "(0x1000000000-0x10ffffffff), 4 GiB of it free (64-bit BARs of 64 MiB or more go only "
                          "there)");
        // The bridge is unchanged: the next device gets the window's start.
        TestDevice fits({{0, PciBarKind::Memory64, 0x1'0000'0000}});
        CHECK(pci.bridge.register_device(fits) == PciBdf{0, 1, 0});
        CHECK(fits.config().bar_address(0) == 0x10'0000'0000);
        TestDevice more({{2, PciBarKind::Memory64, 0x1000'0000}});
        CHECK_THROWS_WITH(pci.bridge.register_device(more), Catch::Contains("BAR2") && Catch::Contains("256 MiB") &&
                                                                Catch::Contains("all of it taken"));
    }
    SECTION("no 64-bit window") {
        PciBus pci;
        CHECK(pci.bridge.memory64_window().empty());
        TestDevice gpu({{0, PciBarKind::Memory64, 0x1000'0000, true}});
        CHECK_THROWS_WITH(pci.bridge.register_device(gpu),
                          "PCI: no room for BAR0, a 64-bit memory BAR of 256 MiB: there is no 64-bit window "
                          "(64-bit BARs of 64 MiB or more go only there)");
        TestDevice nvme({{0, PciBarKind::Memory64, 0x4000}});  // small ones still go below 4 GiB
        pci.bridge.register_device(nvme);
        CHECK(nvme.config().bar_address(0) == 0xc000'0000);
    }
    SECTION("a small one with both windows full names both") {
        PciBus pci(PciMemory64Window{0x10'0000'0000, 0x10'0100'0000});  // 16 MiB
        TestDevice filler({{0, PciBarKind::Memory32, 0x1000'0000}, {1, PciBarKind::Memory32, 0x800'0000}});
        pci.bridge.register_device(filler);  // up to 0xd800'0000
        TestDevice nic({{0, PciBarKind::Memory64, 0x200'0000}});  // 32 MiB: still below 4 GiB
        pci.bridge.register_device(nic);
        CHECK(nic.config().bar_address(0) == 0xd800'0000);
        TestDevice big({{0, PciBarKind::Memory64, 0x400'0000}});  // 64 MiB: above 4 GiB or nowhere
        CHECK_THROWS_WITH(pci.bridge.register_device(big),
                          "PCI: no room for BAR0, a 64-bit memory BAR of 64 MiB: the 64-bit window is 16 MiB "
                          "(0x1000000000-0x1000ffffff), 16 MiB of it free (64-bit BARs of 64 MiB or more go only "
                          "there)");
        TestDevice rest({{0, PciBarKind::Memory32, 0x400'0000}});
        pci.bridge.register_device(rest);  // 0xdc00'0000 up to the window's end
        TestDevice small({{3, PciBarKind::Memory64, 0x200'0000}});
        CHECK_THROWS_WITH(pci.bridge.register_device(small),
                          "PCI: no room for BAR3, a 64-bit memory BAR of 32 MiB: the 32-bit window is 512 MiB "
                          "(0xc0000000-0xdfffffff), all of it taken; the 64-bit window is 16 MiB "
                          "(0x1000000000-0x1000ffffff), 16 MiB of it free");
    }
}

TEST_CASE("PCI host bridge: the machine's 64-bit window is above RAM and below the physical address limit") {
    using Window = PciMemory64Window;
    const auto window = [](uint64_t ram_end, unsigned bits) {
        const Window w = PciHostBridge::memory64_window_above(ram_end, bits);
        return std::pair{w.start, w.end};
    };
    constexpr uint64_t GiB = 1ull << 30;
    CHECK(window(1 * GiB, 46) == std::pair{4 * GiB, 68 * GiB});      // RAM below the hole: from 4 GiB, 64 GiB long
    CHECK(window(9 * GiB, 46) == std::pair{9 * GiB, 73 * GiB});      // 8 GiB of RAM: 3 below the hole, 5 above
    CHECK(window(9 * GiB + 4096, 46) == std::pair{10 * GiB, 74 * GiB});  // the next 1 GiB boundary
    CHECK(window(9 * GiB, 36) == std::pair{9 * GiB, 64 * GiB});      // cut at 2^36
    CHECK(window(64 * GiB, 36) == std::pair{uint64_t{0}, uint64_t{0}});   // nothing left
    CHECK(window(63 * GiB + 1, 36) == std::pair{uint64_t{0}, uint64_t{0}});
    CHECK(window(1 * GiB, 32) == std::pair{uint64_t{0}, uint64_t{0}});
    CHECK(window(~uint64_t{0}, 52) == std::pair{uint64_t{0}, uint64_t{0}});  // no overflow
    CHECK(window(1 * GiB, 64) == std::pair{uint64_t{0}, uint64_t{0}});  // a nonsense width: none
}

TEST_CASE("PCI host bridge: the 64-bit window lies above 4 GiB") {
    IoBus io("io");
    MmioBus mmio("mmio");
    const auto make = [](uint32_t) { return std::make_unique<FakeIrq>(); };
    CHECK_THROWS_AS(PciHostBridge(io, mmio, make, {0x8000'0000, 0x9000'0000}), std::invalid_argument);
    CHECK_THROWS_AS(PciHostBridge(io, mmio, make, {0x2'0000'0000, 0x1'0000'0000}), std::invalid_argument);
    CHECK_NOTHROW(PciHostBridge(io, mmio, make, {0x1'0000'0000, 0x2'0000'0000}));
    CHECK_NOTHROW(PciHostBridge(io, mmio, make));
}

TEST_CASE("PCI host bridge: the guest sizes a 64-bit BAR and moves it above 4 GiB") {
    using Change = std::pair<unsigned, std::optional<uint64_t>>;
    PciBus pci(PciMemory64Window{0x10'0000'0000, 0x20'0000'0000});
    TestDevice device({{0, PciBarKind::Memory64, 0x4000}});
    pci.bridge.register_device(device);
    RecordingDevice& memory = device.handler(0);
    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandMemoryEnable);
    CHECK(device.mapping_changes == std::vector<Change>{{0, 0xc000'0000u}});
    CHECK(pci.mmio_read32(0xc000'0000) == 0x5a5a'5a5a);
    device.mapping_changes.clear();

    // Linux's __pci_read_base, with decoding left on: both registers, low first.
    pci.write_config(1, 0x10, 4, 0xffff'ffff);
    CHECK(pci.read_config(1, 0x10, 4) == 0xffff'c004);
    CHECK(pci.mmio_read32(0xc000'0000) == 0xffff'ffff);  // off the bus while it sizes
    pci.write_config(1, 0x14, 4, 0xffff'ffff);
    CHECK(pci.read_config(1, 0x14, 4) == 0xffff'ffff);
    pci.write_bar64(1, 0x10, 0x18'0000'4000);
    CHECK(pci.read_config(1, 0x10, 4) == 0x4004);
    CHECK(pci.read_config(1, 0x14, 4) == 0x18);
    // Nothing decoded in between: not at 0xffff'ffff'0000'4000 after the low write.
    CHECK(device.mapping_changes == std::vector<Change>{{0, std::nullopt}, {0, 0x18'0000'4000u}});
    CHECK(pci.mmio_read32(0xc000'0000) == 0xffff'ffff);
    CHECK(pci.mmio_read32(0x18'0000'7ffc) == 0x5a5a'5a5a);
    REQUIRE(memory.reads.size() == 2);
    CHECK(memory.reads[1] == std::pair<uint64_t, size_t>{0x3ffc, 4});

    pci.write_config(1, 0x04, 2, 0);
    CHECK(pci.mmio_read32(0x18'0000'4000) == 0xffff'ffff);
    CHECK(device.mapping_changes.back() == Change{0, std::nullopt});
}

// ---------------------------------------------------------------- tracing

TEST_CASE("PCI host bridge trace: config accesses and BAR mappings", "[trace]") {
    CapturedLog log;
    TestDevice device({{0, PciBarKind::Io, 32}, {1, PciBarKind::Memory32, 0x1000}});
    PciBus pci;
    pci.bridge.register_device(device);
    pci.bridge.set_trace(true);
    CHECK(pci.bridge.trace());

    CHECK(pci.read_config(1, 0x10, 4) == 0xc001);
    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandIoEnable);
    CHECK(pci.read_config(1, 0x0e, 1) == 0);          // a byte inside the dword
    CHECK(pci.read_config(5, 0x00, 4) == 0xffff'ffff);  // nothing there
    pci.write_config(1, 0x04, 2, 0);

    const auto lines = log.matching("trace pci ");
    REQUIRE(lines.size() == 7);
    CHECK_THAT(lines[0], Catch::Contains("[info] trace pci 00:01.0 read  off=0x10 len=4 val=0x0000c001"));
    CHECK_THAT(lines[1], Catch::Contains("trace pci 00:01.0 write off=0x04 len=2 val=0x0001"));
    CHECK_THAT(lines[2], Catch::Contains("trace pci 00:01.0 BAR0 map io 0xc000+0x20"));  // after the write that caused it
    CHECK_THAT(lines[3], Catch::Contains("trace pci 00:01.0 read  off=0x0e len=1 val=0x00"));
    CHECK_THAT(lines[4], Catch::Contains("trace pci 00:05.0 read  off=0x00 len=4 val=0xffffffff no device"));
    CHECK_THAT(lines[5], Catch::Contains("trace pci 00:01.0 write off=0x04 len=2 val=0x0000"));
    CHECK_THAT(lines[6], Catch::Contains("trace pci 00:01.0 BAR0 unmap io 0xc000+0x20"));

    SECTION("a data-window access without the enable bit says so") {
        pci.out(0xcf8, 4, 0x0000'0800);
        CHECK(pci.in(0xcfc, 4) == 0xffff'ffff);
        CHECK(log.count("trace pci 00:01.0 read  off=0x00 len=4 val=0xffffffff not enabled") == 1);
    }
}

TEST_CASE("PCI host bridge trace: 64-bit BARs map as mem64 with 64-bit addresses", "[trace]") {
    CapturedLog log;
    TestDevice device({{0, PciBarKind::Memory64, 0x1000'0000, true}, {2, PciBarKind::Memory32, 0x1000}});
    PciBus pci(PciMemory64Window{0x10'0000'0000, 0x20'0000'0000});
    pci.bridge.register_device(device);
    pci.bridge.set_trace(true);
    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandMemoryEnable);
    pci.write_config(1, 0x04, 2, 0);
    CHECK(log.count("trace pci 00:01.0 BAR0 map mem64 0x1000000000+0x10000000") == 1);
    CHECK(log.count("trace pci 00:01.0 BAR2 map mem 0xc0000000+0x1000") == 1);
    CHECK(log.count("trace pci 00:01.0 BAR0 unmap mem64 0x1000000000+0x10000000") == 1);
}

TEST_CASE("PCI host bridge trace: off by default and when turned off", "[trace]") {
    CapturedLog log;
    TestDevice device;
    PciBus pci;
    pci.bridge.register_device(device);
    CHECK_FALSE(pci.bridge.trace());
    (void)pci.read_config(1, 0x00, 4);
    pci.write_config(1, 0x04, 2, PciConfigSpace::kCommandIoEnable);
    pci.bridge.set_trace(true);
    pci.bridge.set_trace(false);
    pci.write_config(1, 0x04, 2, 0);
    CHECK(log.count("trace") == 0);
}

namespace {

// A device whose registers from 0x80 on live in "hardware" (an array), the
// way an assigned device passes through what it does not emulate.
class PassThroughDevice : public TestDevice {
public:
    void config_read(uint32_t offset, std::span<uint8_t> data) override {
        TestDevice::config_read(offset, data);
        for (size_t i = 0; i < data.size(); ++i)
            if (offset + i >= 0x80) data[i] = hardware[offset + i];
    }
    PciConfigChanges config_write(uint32_t offset, std::span<const uint8_t> data) override {
        writes.emplace_back(offset, data.size());
        for (size_t i = 0; i < data.size(); ++i)
            if (offset + i >= 0x80) hardware[offset + i] = data[i];
        return TestDevice::config_write(offset, data);
    }
    std::array<uint8_t, 256> hardware{};
    std::vector<std::pair<uint32_t, size_t>> writes;
};

}  // namespace

TEST_CASE("PCI host bridge: a device may serve configuration accesses itself (pass-through)") {
    PciBus bus;
    PassThroughDevice device;
    for (size_t i = 0x80; i < 0x100; ++i) device.hardware[i] = static_cast<uint8_t>(i);
    const PciBdf bdf = bus.bridge.register_device(device);
    CHECK(bus.read_config(bdf.device, 0x84, 4) == 0x8786'8584);  // from the "hardware"
    CHECK(bus.read_config(bdf.device, 0x00, 2) == kTestIdentity.vendor_id);  // emulated
    bus.write_config(bdf.device, 0x90, 2, 0xbeef);
    CHECK(device.hardware[0x90] == 0xef);
    CHECK(device.hardware[0x91] == 0xbe);
    CHECK(device.writes.back() == std::pair<uint32_t, size_t>{0x90, 2});
    // The bridge still acts on what the device's write changed: decoding on maps BAR 0.
    bus.write_config(bdf.device, PciConfigSpace::kCommand, 2, PciConfigSpace::kCommandIoEnable);
    REQUIRE_FALSE(device.mapping_changes.empty());
    CHECK(device.mapping_changes.back().first == 0);
    CHECK(device.mapping_changes.back().second.has_value());
}
