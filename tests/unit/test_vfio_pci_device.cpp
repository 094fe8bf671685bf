// The assigned-device model against a fake VFIO device shaped like QEMU's
// NVMe controller: which configuration bytes the guest sees emulated and
// which reach the device, BARs, the filtered capability list, the MSI-X
// table in a BAR it shares with registers, interrupt mode switches, and
// what the model leaves behind.

#include <catch2/catch.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <memory>

#include "fake_vfio_device.h"
#include "test_helpers.h"
#include "devices/pci_host_bridge.h"
#include "devices/vfio/vfio_pci_capabilities.h"
#include "devices/vfio/vfio_pci_device.h"
#include "vmm/core/error.h"

using namespace minikvm;
using minikvm::test::FakeVfioDevice;

namespace {

constexpr uint32_t kPm = 0x40, kMsi = 0x48, kExpress = 0x60, kMsix = 0xa0, kVendor = 0xb0;
constexpr uint16_t kVectors = 65;

// QEMU's NVMe, as VFIO shows it, plus an I/O BAR, a prefetchable BAR, an
// expansion ROM, an MSI capability (64-bit, per-vector masks, 4 vectors;
// VFIO offers no MSI unless a test says so) and a vendor-specific one.
std::unique_ptr<FakeVfioDevice> nvme_like() {
    auto device = std::make_unique<FakeVfioDevice>();
    FakeVfioDevice& d = *device;
    d.put16(0x00, 0x1b36);
    d.put16(0x02, 0x0010);
    d.put16(0x04, 0x0400);  // the host left INTx disabled
    d.put16(0x06, 0x0010);  // capabilities list
    d.put32(0x08, 0x01080202);
    d.config[0x0e] = 0x80;  // multifunction on the host
    d.put32(0x10, 0x4);     // BAR0: 64-bit memory
    d.put32(0x18, 0x1);     // BAR2: I/O
    d.put32(0x20, 0x8);     // BAR4: 32-bit prefetchable memory
    d.put16(0x2c, 0x1af4);
    d.put16(0x2e, 0x1100);
    d.put32(0x30, 0xfebc0000);  // ROM where the host put it
    d.config[0x34] = kPm;
    d.config[0x3d] = 1;
    d.config[kPm] = 0x01, d.config[kPm + 1] = kMsi;
    d.put16(kPm + 2, 0x0003);
    d.config[kMsi] = 0x05, d.config[kMsi + 1] = kExpress;
    d.put16(kMsi + 2, 0x0184);
    d.config[kExpress] = 0x10, d.config[kExpress + 1] = kMsix;
    d.put16(kExpress + 2, 0x0002);  // version 2, endpoint
    d.put32(kExpress + 4, 0x1000'8fc0);  // device capabilities, FLR among them
    d.put32(kExpress + 0x0c, 0x00413c12);  // link capabilities
    d.put16(kExpress + 0x12, 0x1011);      // link status
    d.config[kMsix] = 0x11, d.config[kMsix + 1] = kVendor;
    d.put16(kMsix + 2, kVectors - 1);
    d.put32(kMsix + 4, 0x2000);  // table: BAR0 + 0x2000
    d.put32(kMsix + 8, 0x3000);  // PBA: BAR0 + 0x3000
    d.config[kVendor] = 0x09, d.config[kVendor + 1] = 0;
    d.config[kVendor + 2] = 0x10;
    d.config[kVendor + 3] = 0x77;
    d.set_region(0, 0x4000);
    d.set_region(2, 0x20);
    d.set_region(4, 0x1000);
    d.set_region(VFIO_PCI_ROM_REGION_INDEX, 0x10000);
    d.set_irq_count(VFIO_PCI_INTX_IRQ_INDEX, 1);
    d.set_irq_count(VFIO_PCI_MSIX_IRQ_INDEX, kVectors);
    // Registers around the MSI-X table, as in QEMU's NVMe.
    d.bar_bytes[0][0x1ffc] = 0xab;
    d.bar_bytes[0][0x0000] = 0xcd;
    return device;
}

// The guest's side: the model on a bridge, reached through 0xcf8/0xcfc.
struct Rig {
    std::unique_ptr<FakeVfioDevice> device;
    IoBus io{"io"};
    MmioBus mmio{"mmio"};
    PciHostBridge bridge{io, mmio, [](uint32_t) { return std::make_unique<test_helpers::FakeIrq>(); }};
    std::unique_ptr<VfioPciDevice> model;
    unsigned slot = 0;

    explicit Rig(std::unique_ptr<FakeVfioDevice> d = nvme_like()) : device(std::move(d)) { attach(); }
    void attach() {
        io.add(PciHostBridge::kBasePort, PciHostBridge::kPortCount, bridge);
        model = std::make_unique<VfioPciDevice>(*device, VfioPciDevice::Kvm{}, "vfio-test");
        slot = bridge.register_device(*model).device;
    }
    uint32_t read(uint32_t reg, size_t width) {
        select(reg);
        uint8_t bytes[4] = {};
        io.read(0xcfc + (reg & 3), std::span(bytes, width));
        return test_helpers::from_le(std::span(bytes, width));
    }
    void write(uint32_t reg, size_t width, uint32_t value) {
        select(reg);
        uint8_t bytes[4] = {};
        test_helpers::to_le(value, std::span(bytes, width));
        io.write(0xcfc + (reg & 3), std::span<const uint8_t>(bytes, width));
    }
    void select(uint32_t reg) {
        const uint32_t address = 0x8000'0000u | slot << 11 | (reg & 0xfc);
        uint8_t bytes[4];
        test_helpers::to_le(address, bytes);
        io.write(0xcf8, bytes);
    }
    bool wrote_through(uint32_t offset) const {
        return std::count(device->config_writes.begin(), device->config_writes.end(), offset) != 0;
    }
    uint32_t bar32(uint64_t offset) {
        uint8_t bytes[4] = {};
        model->bar_read(0, offset, bytes);
        return test_helpers::from_le(bytes);
    }
    void bar_write32(uint64_t offset, uint32_t value) {
        uint8_t bytes[4];
        test_helpers::to_le(value, bytes);
        model->bar_write(0, offset, bytes);
    }
};

}  // namespace

TEST_CASE("vfio-pci: the header is the device's identity and minikvm's everything else", "[vfio-pci]") {
    Rig rig;
    CHECK(rig.device->resets == 1);  // before the guest saw anything
    CHECK(rig.read(0x00, 4) == 0x0010'1b36);
    CHECK(rig.read(0x08, 4) == 0x01080202);
    CHECK(rig.read(0x2c, 4) == 0x1100'1af4);
    CHECK(rig.read(0x0e, 1) == 0x00);       // single-function, whatever the host's header says
    CHECK(rig.read(0x30, 4) == 0);          // no expansion ROM
    rig.write(0x30, 4, 0xffff'ffff);
    CHECK(rig.read(0x30, 4) == 0);
    CHECK(rig.read(0x3d, 1) == 1);          // INTA#
    CHECK(rig.read(0x3c, 1) == PciHostBridge::kInterruptGsis[0]);
    CHECK(rig.device->config_writes.empty() == false);  // the command register, mirrored at start
    CHECK_FALSE(rig.wrote_through(0x30));
}

TEST_CASE("vfio-pci: BARs are sized and moved by the guest, never on the device", "[vfio-pci]") {
    Rig rig;
    // 64-bit BAR0 of 16 KiB: the sizing protocol on both registers.
    rig.write(0x10, 4, 0xffff'ffff);
    CHECK(rig.read(0x10, 4) == 0xffff'c004);
    rig.write(0x14, 4, 0xffff'ffff);
    CHECK(rig.read(0x14, 4) == 0xffff'ffff);
    rig.write(0x10, 4, 0xe000'0000);
    rig.write(0x14, 4, 0x1);
    CHECK(rig.read(0x10, 4) == 0xe000'0004);
    CHECK(rig.read(0x14, 4) == 0x1);
    // BAR2 (I/O, 32 bytes) and BAR4 (prefetchable 4 KiB).
    rig.write(0x18, 4, 0xffff'ffff);
    CHECK(rig.read(0x18, 4) == 0xffff'ffe1);
    rig.write(0x20, 4, 0xffff'ffff);
    CHECK(rig.read(0x20, 4) == 0xffff'f008);
    for (uint32_t offset = 0x10; offset < 0x28; ++offset) CHECK_FALSE(rig.wrote_through(offset));
    CHECK(rig.device->get16(0x10) == 0x4);  // the host's address stays
}

TEST_CASE("vfio-pci: the command register is the guest's and reaches the device", "[vfio-pci]") {
    Rig rig;
    CHECK((rig.device->get16(0x04) & 0x0407) == 0);  // decoding, bus mastering, INTx-disable off at start
    rig.device->config[0x05] |= 0x01;  // SERR# enable, the host's: kept
    rig.write(0x04, 2, 0x0006);
    CHECK(rig.read(0x04, 2) == 0x0006);
    CHECK(rig.device->get16(0x04) == 0x0106);
    rig.write(0x04, 2, 0x0400);  // INTx disable
    CHECK(rig.device->get16(0x04) == 0x0500);
}

TEST_CASE("vfio-pci: the capability list holds what minikvm can stand behind", "[vfio-pci]") {
    Rig rig;
    CHECK((rig.read(0x06, 2) & 0x10) != 0);
    std::vector<std::pair<uint32_t, uint32_t>> seen;  // offset, ID
    for (uint32_t at = rig.read(0x34, 1); at != 0 && seen.size() < 10; at = rig.read(at + 1, 1))
        seen.emplace_back(at, rig.read(at, 1));
    // MSI and the vendor-specific capability are left out.
    CHECK(seen == std::vector<std::pair<uint32_t, uint32_t>>{{kPm, 0x01}, {kExpress, 0x10}, {kMsix, 0x11}});

    SECTION("power management and PCI Express are read-only copies") {
        CHECK(rig.read(kPm + 2, 2) == 0x0003);
        CHECK(rig.read(kPm + 4, 2) == 0x0008);  // D0, No_Soft_Reset: no reset through D3hot
        rig.write(kPm + 4, 2, 0x0003);  // to D3hot: not on the device
        CHECK(rig.read(kPm + 4, 2) == 0x0008);
        CHECK(rig.read(kExpress + 4, 4) == 0x0000'8fc0);  // no FLR to offer
        CHECK_FALSE(rig.wrote_through(kPm + 4));
        // An integrated endpoint, without a link.
        CHECK(rig.read(kExpress + 2, 2) == 0x0092);
        CHECK(rig.read(kExpress + 0x0c, 4) == 0);
        CHECK(rig.read(kExpress + 0x12, 2) == 0);
        rig.write(kExpress + 8, 2, 0x8000);  // initiate function-level reset: not on the device
        CHECK_FALSE(rig.wrote_through(kExpress + 8));
    }
    SECTION("bytes outside the kept capabilities are the device's") {
        CHECK(rig.read(kVendor + 2, 2) == 0x7710);
        rig.write(kVendor + 3, 1, 0x55);
        CHECK(rig.wrote_through(kVendor + 3));
        CHECK(rig.device->config[kVendor + 3] == 0x55);
        CHECK(rig.read(kVendor + 2, 2) == 0x5510);
        CHECK(rig.read(kMsi, 1) == 0x05);  // readable where it is, just not listed (VFIO offers no MSI here)
    }
    SECTION("an access straddling emulated and device bytes is split") {
        rig.device->config[kPm + 8] = 0x42;  // the hidden MSI capability's: the device's
        rig.device->config[kPm + 6] = 0x99;  // the device's; the guest sees the copy's 0
        uint8_t bytes[4] = {};
        rig.model->config_read(kPm + 6, bytes);
        CHECK(test_helpers::from_le(bytes) == 0x6042'0000u);  // 0x60: the hidden MSI's next pointer
    }
}

TEST_CASE("vfio-pci: the MSI-X table is emulated inside a BAR it shares with registers", "[vfio-pci]") {
    Rig rig;
    // Registers around the table go to the device.
    CHECK(rig.bar32(0x1ffc) == 0xab);
    CHECK(rig.bar32(0x0000) == 0xcd);
    rig.bar_write32(0x1000, 0x1234);
    CHECK(rig.device->bar_bytes[0][0x1000] == 0x34);
    // The table is minikvm's: every vector starts masked; writes stay here.
    CHECK(rig.bar32(0x2000 + 12) == 1);
    rig.bar_write32(0x2000, 0xfee0'0000);
    rig.bar_write32(0x2008, 0x41);
    CHECK(rig.bar32(0x2000) == 0xfee0'0000);
    CHECK(rig.bar32(0x2008) == 0x41);
    CHECK(rig.device->bar_bytes[0][0x2000] == 0);
    CHECK(rig.device->bar_bytes[0][0x2008] == 0);
    // The PBA is read-only.
    rig.bar_write32(0x3000, 0xffff'ffff);
    CHECK(rig.bar32(0x3000) == 0);
    CHECK(rig.device->bar_bytes[0][0x3000] == 0);
}

TEST_CASE("vfio-pci: MSI-X on and off switches the device's interrupts", "[vfio-pci]") {
    Rig rig;
    rig.write(0x04, 2, 0x0006);
    rig.device->irq_calls.clear();
    rig.write(kMsix + 2, 2, 0xc000 | (kVectors - 1));  // enable, function-masked
    REQUIRE(rig.device->irq_calls.size() == 1);
    const auto& call = rig.device->irq_calls[0];
    CHECK(call.index == VFIO_PCI_MSIX_IRQ_INDEX);
    CHECK(call.action == VFIO_IRQ_SET_ACTION_TRIGGER);
    CHECK(call.start == 0);
    CHECK(call.fds.size() == kVectors);
    CHECK(rig.model->interrupt_mode() == VfioPciDevice::InterruptMode::Msix);
    rig.write(kMsix + 2, 2, 0x8000 | (kVectors - 1));  // function unmasked: no new VFIO call
    CHECK(rig.device->irq_calls.size() == 1);
    rig.write(kMsix + 2, 2, kVectors - 1);  // off
    REQUIRE(rig.device->irq_calls.size() == 2);
    CHECK(rig.device->irq_calls[1].index == VFIO_PCI_MSIX_IRQ_INDEX);
    CHECK(rig.device->irq_calls[1].action == 0);
    // Without KVM there is no INTx to go back to.
    CHECK(rig.model->interrupt_mode() == VfioPciDevice::InterruptMode::None);
}

TEST_CASE("vfio-pci: a vector the device sends while masked is pending, then delivered once", "[vfio-pci]") {
    Rig rig;
    rig.write(0x04, 2, 0x0006);
    rig.write(kMsix + 2, 2, 0x8000 | (kVectors - 1));
    const std::vector<int32_t> fds = rig.device->irq_calls.back().fds;
    rig.bar_write32(0x2000 + 3 * 16, 0xfee0'0000);
    rig.bar_write32(0x2000 + 3 * 16 + 8, 0x45);
    // The device sends vector 3 (VFIO writes its eventfd) while it is masked.
    const uint64_t one = 1;
    REQUIRE(::write(fds[3], &one, sizeof one) == sizeof one);
    REQUIRE(::write(fds[3], &one, sizeof one) == sizeof one);
    CHECK(rig.bar32(0x3000) == 1u << 3);  // pending, once
    // Unmasked: delivered into its eventfd (KVM's irqfd takes it from there).
    rig.bar_write32(0x2000 + 3 * 16 + 12, 0);
    CHECK(rig.bar32(0x3000) == 0);
    uint64_t count = 0;
    REQUIRE(::read(fds[3], &count, sizeof count) == sizeof count);
    CHECK(count == 1);
    CHECK(::read(fds[3], &count, sizeof count) < 0);  // nothing more
}

TEST_CASE("vfio-pci: a guest writing every config byte at every width breaks nothing", "[vfio-pci]") {
    Rig rig;
    for (size_t width : {1, 2, 4})
        for (uint32_t offset = 0; offset + width <= 256; offset += static_cast<uint32_t>(width))
            for (uint32_t value : {0u, 0xffff'ffffu, 0x5a5a'5a5au}) {
                rig.write(offset, width, value);
                (void)rig.read(offset, width);
            }
    CHECK(rig.read(0x00, 4) == 0x0010'1b36);
    CHECK(rig.read(0x0e, 1) == 0);
    for (uint32_t offset = 0x10; offset < 0x40; ++offset)
        if (offset != 0x04 && offset != 0x05) CHECK_FALSE(rig.wrote_through(offset));
}

TEST_CASE("vfio-pci: leaving turns the device off and resets it", "[vfio-pci]") {
    Rig rig;
    rig.write(0x04, 2, 0x0007);
    rig.write(kMsix + 2, 2, 0x8000 | (kVectors - 1));
    rig.device->irq_calls.clear();
    rig.model.reset();
    CHECK((rig.device->get16(0x04) & 0x0007) == 0);
    CHECK(rig.device->resets == 2);
    REQUIRE_FALSE(rig.device->irq_calls.empty());
    CHECK(rig.device->irq_calls[0].index == VFIO_PCI_MSIX_IRQ_INDEX);
    CHECK(rig.device->irq_calls[0].action == 0);
}

TEST_CASE("vfio-pci: devices minikvm cannot present are refused with a line", "[vfio-pci]") {
    SECTION("an I/O BAR over 256 bytes") {
        auto device = nvme_like();
        device->set_region(2, 0x400);
        CHECK_THROWS_AS(VfioPciDevice(*device, {}, "vfio-test"), VmmError);
    }
    SECTION("a bridge") {
        auto device = nvme_like();
        device->config[0x0e] = 0x01;
        CHECK_THROWS_AS(VfioPciDevice(*device, {}, "vfio-test"), VmmError);
    }
    SECTION("no configuration space") {
        auto device = nvme_like();
        device->config.fill(0xff);
        CHECK_THROWS_AS(VfioPciDevice(*device, {}, "vfio-test"), VmmError);
    }
}

TEST_CASE("vfio-pci capabilities: the walk ends on loops and bad offsets", "[vfio-pci]") {
    std::array<uint8_t, 256> config{};
    config[0x06] = 0x10;
    SECTION("a loop") {
        config[0x34] = 0x40;
        config[0x40] = 0x01, config[0x41] = 0x48;
        config[0x48] = 0x09, config[0x49] = 0x40;
        CHECK(walk_pci_capabilities(config).size() == 2);
    }
    SECTION("a pointer into the header") {
        config[0x34] = 0x20;
        CHECK(walk_pci_capabilities(config).empty());
    }
    SECTION("a capability that would run past the end is hidden") {
        config[0x34] = 0xfc;
        config[0xfc] = 0x10;  // PCI Express needs 0x3c bytes
        const auto found = walk_pci_capabilities(config);
        REQUIRE(found.size() == 1);
        CHECK(found[0].treatment == VfioPciCapability::Treatment::Hidden);
    }
    SECTION("no capabilities bit: no list") {
        config[0x06] = 0;
        config[0x34] = 0x40;
        config[0x40] = 0x11;
        CHECK(walk_pci_capabilities(config).empty());
    }
}

namespace {

std::unique_ptr<FakeVfioDevice> with_msi() {
    auto device = nvme_like();
    device->set_irq_count(VFIO_PCI_MSI_IRQ_INDEX, 1);
    return device;
}

}  // namespace

TEST_CASE("vfio-pci: MSI is emulated in the device's shape", "[vfio-pci]") {
    Rig rig(with_msi());
    std::vector<uint32_t> listed;
    for (uint32_t at = rig.read(0x34, 1); at != 0 && listed.size() < 10; at = rig.read(at + 1, 1)) listed.push_back(at);
    CHECK(listed == std::vector<uint32_t>{kPm, kMsi, kExpress, kMsix});
    CHECK(rig.read(kMsi + 2, 2) == 0x0184);  // 64-bit, per-vector masks, 4 vectors capable, off
    rig.write(0x04, 2, 0x0006);
    rig.write(kMsi + 4, 4, 0xfee0'1003);  // the low two address bits are reserved
    CHECK(rig.read(kMsi + 4, 4) == 0xfee0'1000);
    rig.write(kMsi + 12, 2, 0x4040);
    rig.write(kMsi + 0x14, 4, 0xffff'ffff);  // pending bits: read-only
    CHECK(rig.read(kMsi + 0x14, 4) == 0);
    CHECK(rig.model->interrupt_mode() == VfioPciDevice::InterruptMode::None);
    rig.device->irq_calls.clear();

    rig.write(kMsi + 2, 2, 0x0184 | 2 << 4 | 1);  // 4 vectors, on
    REQUIRE(rig.device->irq_calls.size() == 1);
    CHECK(rig.device->irq_calls[0].index == VFIO_PCI_MSI_IRQ_INDEX);
    CHECK(rig.device->irq_calls[0].action == VFIO_IRQ_SET_ACTION_TRIGGER);
    CHECK(rig.device->irq_calls[0].fds.size() == 4);
    CHECK(rig.model->interrupt_mode() == VfioPciDevice::InterruptMode::Msi);

    const MsiCapability& msi = *rig.model->msi();
    REQUIRE(msi.deliverable_message(1));
    CHECK(msi.deliverable_message(1)->address == 0xfee0'1000);
    CHECK(msi.deliverable_message(1)->data == 0x4041);  // vector 1 in the low bits
    CHECK_FALSE(msi.deliverable_message(4));            // past the vectors enabled
    rig.write(kMsi + 0x10, 4, 0x2);                     // mask vector 1
    CHECK_FALSE(msi.deliverable_message(1));
    CHECK(msi.deliverable_message(0));
    rig.write(0x04, 2, 0x0002);  // bus mastering off: nothing goes out
    CHECK_FALSE(msi.deliverable_message(0));
    rig.write(0x04, 2, 0x0006);

    SECTION("MSI-X enabled on top is refused") {
        rig.write(kMsix + 2, 2, 0x8000 | (kVectors - 1));
        CHECK(rig.device->irq_calls.size() == 1);
        CHECK(rig.model->interrupt_mode() == VfioPciDevice::InterruptMode::Msi);
    }
    SECTION("a new vector count re-enables MSI in VFIO") {
        rig.write(kMsi + 2, 2, 0x0184 | 1 << 4 | 1);  // 2 vectors
        REQUIRE(rig.device->irq_calls.size() == 3);
        CHECK(rig.device->irq_calls[1].index == VFIO_PCI_MSI_IRQ_INDEX);
        CHECK(rig.device->irq_calls[1].action == 0);
        CHECK(rig.device->irq_calls[2].fds.size() == 2);
    }
    SECTION("more vectors than capable: what is capable") {
        rig.write(kMsi + 2, 2, 0x0184 | 5 << 4 | 1);
        CHECK(rig.device->irq_calls.back().fds.size() == 4);
    }
    SECTION("off") {
        rig.write(kMsi + 2, 2, 0x0184);
        REQUIRE(rig.device->irq_calls.size() == 2);
        CHECK(rig.device->irq_calls[1].index == VFIO_PCI_MSI_IRQ_INDEX);
        CHECK(rig.device->irq_calls[1].action == 0);
        CHECK(rig.model->interrupt_mode() == VfioPciDevice::InterruptMode::None);
    }
}
