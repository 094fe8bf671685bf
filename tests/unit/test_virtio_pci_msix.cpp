// MSI-X on the legacy virtio-pci transport: the capability and BAR 1, the
// register block growing to 24 bytes while MSI-X is on and shrinking back,
// vector mapping with NO_VECTOR for what the table lacks and after reset,
// used-buffer and config-change signals on their vectors (never INTx or the
// ISR), masking through the BAR, INTx handed over in both directions, the
// state dump.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "captured_log.h"
#include "devices/msi_sender.h"
#include "virtio_pci_rig.h"

using namespace virtio_pci_rig;

namespace {

struct RecordingMsi : MsiSender {
    std::mutex mutex;
    std::vector<std::pair<uint16_t, MsiMessage>> sent;
    void send(uint16_t vector, const MsiMessage& message) override {
        std::lock_guard lock(mutex);
        sent.emplace_back(vector, message);
    }
    std::vector<uint16_t> vectors() {
        std::lock_guard lock(mutex);
        std::vector<uint16_t> out;
        for (const auto& [vector, message] : sent) out.push_back(vector);
        return out;
    }
};

constexpr uint32_t kMsiAddress = 0xfee0'0000;

struct MsixRig {
    MsixRig() : transport(dev, memory, "virtio-msix", nullptr, nullptr, &msi) {
        transport.connect_intx(irq);
        // A driver enables bus mastering first: without it no MSI may be sent.
        config_write16(PciConfigSpace::kCommand, PciConfigSpace::kCommandBusMaster);
    }

    MsixCapability& cap() { return *transport.msix(); }

    // A guest configuration write, as the host bridge passes it on.
    void config_write16(uint32_t offset, uint16_t value) {
        uint8_t bytes[2] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8)};
        transport.config().write(offset, bytes);
        transport.config_written(offset, 2);
    }
    uint16_t control() {
        uint8_t bytes[2];
        transport.config().read(cap().offset() + 2u, bytes);
        return static_cast<uint16_t>(bytes[0] | bytes[1] << 8);
    }
    void set_msix(bool enable, bool function_mask = false) {
        config_write16(cap().offset() + 2u, static_cast<uint16_t>((enable ? MsixCapability::kControlEnable : 0) |
                                                                   (function_mask ? MsixCapability::kControlFunctionMask : 0)));
    }
    void bar_write32(uint64_t offset, uint32_t value) {
        uint8_t bytes[4];
        std::memcpy(bytes, &value, 4);
        cap().write(offset, bytes);
    }
    uint32_t bar_read32(uint64_t offset) {
        uint8_t bytes[4];
        cap().read(offset, bytes);
        uint32_t value;
        std::memcpy(&value, bytes, 4);
        return value;
    }
    // Entry `e` pointed at the LAPIC with data 0x40 + e, unmasked.
    void program(unsigned e, bool masked = false) {
        bar_write32(e * 16u, kMsiAddress);
        bar_write32(e * 16u + 4, 0);
        bar_write32(e * 16u + 8, 0x40 + e);
        bar_write32(e * 16u + 12, masked ? 1 : 0);
    }
    void place_queue(uint16_t index, uint32_t pfn) {
        reg_write(transport, V::kQueueSelect, 2, index);
        reg_write(transport, V::kQueuePfn, 4, pfn);
    }
    uint16_t set_queue_vector(uint16_t queue, uint16_t vector) {
        reg_write(transport, V::kQueueSelect, 2, queue);
        reg_write(transport, V::kMsiQueueVector, 2, vector);
        return static_cast<uint16_t>(reg_read(transport, V::kMsiQueueVector, 2));
    }
    // MSI-X on, every entry programmed, config on 0, queue i on i + 1, DRIVER_OK.
    void start() {
        for (unsigned e = 0; e < 3; ++e) program(e);
        set_msix(true);
        reg_write(transport, V::kMsiConfigVector, 2, 0);
        place_queue(0, kRingPfn);
        place_queue(1, kRingPfn2);
        REQUIRE(set_queue_vector(0, 1) == 1);
        REQUIRE(set_queue_vector(1, 2) == 2);
        reg_write(transport, V::kStatus, 1, kReady);
    }

    GuestMemory memory = GuestMemory::allocate(kRamSize);
    FakeDevice dev;  // two queues: three vectors
    test_helpers::FakeIrq irq;
    RecordingMsi msi;
    V transport;
};

}  // namespace

TEST_CASE("virtio-pci MSI-X: capability and table BAR", "[virtio-pci][msix]") {
    MsixRig rig;
    const std::vector<PciBar> bars = rig.transport.bars();
    REQUIRE(bars.size() == 2);
    CHECK(bars[1].index == 1);
    CHECK(bars[1].kind == PciBarKind::Memory32);
    CHECK(bars[1].size == 4096);

    PciConfigSpace& config = rig.transport.config();
    uint8_t header[12];
    config.read(rig.cap().offset(), header);
    CHECK(header[0] == MsixCapability::kCapabilityId);
    CHECK((header[2] | header[3] << 8) == 2);  // table size - 1: three vectors
    uint32_t table, pba;
    std::memcpy(&table, header + 4, 4);
    std::memcpy(&pba, header + 8, 4);
    CHECK(table == 0x0000'0001);  // offset 0, BAR 1
    CHECK(pba == 0x0000'0801);    // offset 2048, BAR 1
    uint8_t pointer[1];
    config.read(PciConfigSpace::kCapabilitiesPointer, pointer);
    CHECK(pointer[0] == rig.cap().offset());

    // Only the enable and function-mask bits are writable.
    rig.config_write16(rig.cap().offset() + 2u, 0xffff);
    CHECK(rig.control() == 0xc002);
    CHECK(rig.transport.msix_enabled());
    rig.config_write16(rig.cap().offset() + 2u, 0);
    CHECK(rig.control() == 0x0002);
    CHECK_FALSE(rig.transport.msix_enabled());

    // Without an MsiSender there is no capability and no BAR 1.
    FakeDevice plain_device;
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    V plain(plain_device, memory, "virtio-intx");
    CHECK(plain.msix() == nullptr);
    CHECK(plain.bars().size() == 1);
}

TEST_CASE("virtio-pci MSI-X: BAR 0 grows by the vector registers", "[virtio-pci][msix]") {
    MsixRig rig;
    // 12 configuration bytes: 20 + 12 fits 32, 24 + 12 needs 64.
    CHECK(V::bar_size_for(12, false) == 32);
    CHECK(V::bar_size_for(12, true) == 64);
    CHECK(rig.transport.bar_size() == 64);

    CHECK(reg_read(rig.transport, V::kConfig, 1) == 0xa0);  // MSI-X off: configuration at 20
    rig.set_msix(true);
    CHECK(reg_read(rig.transport, V::kMsiConfigVector, 2) == V::kNoVector);
    CHECK(reg_read(rig.transport, V::kMsiQueueVector, 2) == V::kNoVector);
    CHECK(reg_read(rig.transport, V::kMsiConfigVector, 4) == 0xffff'ffff);
    CHECK(reg_read(rig.transport, V::kConfigWithMsix, 4) == 0xa3a2'a1a0);
    // Configuration writes land at the device's offset 0 from 24.
    reg_write(rig.transport, V::kConfigWithMsix + 1, 1, 0x55);
    CHECK(rig.dev.config_bytes()[1] == 0x55);
    CHECK(rig.dev.config_bytes()[0] == 0xa0);  // the vector write did not reach it
    reg_write(rig.transport, V::kMsiConfigVector, 2, 1);
    CHECK(rig.dev.config_bytes()[0] == 0xa0);
    rig.set_msix(false);
    CHECK(reg_read(rig.transport, V::kConfig, 2) == 0x55a0);
}

TEST_CASE("virtio-pci MSI-X: vector mapping and NO_VECTOR", "[virtio-pci][msix]") {
    MsixRig rig;
    rig.set_msix(true);
    reg_write(rig.transport, V::kMsiConfigVector, 2, 2);
    CHECK(reg_read(rig.transport, V::kMsiConfigVector, 2) == 2);
    CHECK(rig.transport.config_vector() == 2);
    // Out of range: NO_VECTOR, as the spec requires of a device that cannot map it.
    reg_write(rig.transport, V::kMsiConfigVector, 2, 3);
    CHECK(reg_read(rig.transport, V::kMsiConfigVector, 2) == V::kNoVector);
    CHECK(rig.set_queue_vector(0, 1) == 1);
    CHECK(rig.set_queue_vector(1, 0x7ff) == V::kNoVector);
    CHECK(rig.set_queue_vector(1, 0) == 0);
    CHECK(rig.set_queue_vector(0, 1) == 1);  // per queue: queue 1's write left queue 0 alone
    // A queue that does not exist: reads NO_VECTOR, writes ignored.
    CHECK(rig.set_queue_vector(7, 1) == V::kNoVector);
    // A byte write of the low half is zero-extended, like every register.
    reg_write(rig.transport, V::kMsiConfigVector, 1, 1);
    CHECK(reg_read(rig.transport, V::kMsiConfigVector, 2) == 1);
    // Reset unmaps everything.
    reg_write(rig.transport, V::kStatus, 1, 0);
    CHECK(rig.transport.config_vector() == V::kNoVector);
    CHECK(rig.transport.queue_vector(0) == V::kNoVector);
    CHECK(rig.transport.queue_vector(1) == V::kNoVector);
    // The table is PCI state: a virtio reset keeps MSI-X enabled.
    CHECK(rig.transport.msix_enabled());
}

TEST_CASE("virtio-pci MSI-X: signals go to their vectors, not INTx", "[virtio-pci][msix]") {
    MsixRig rig;
    rig.start();
    rig.dev.signal_used(0);
    rig.dev.signal_used(1);
    rig.dev.signals()->signal_config_change();
    REQUIRE(rig.msi.vectors() == std::vector<uint16_t>{1, 2, 0});
    CHECK(rig.msi.sent[0].second == MsiMessage{kMsiAddress, 0x41});
    CHECK_FALSE(rig.irq.level);
    CHECK(rig.irq.rising_edges == 0);
    // 4.1.4.5.1: the config bit is set before every config notification,
    // MSI-X or not; the queue bit only without MSI-X. No INTx either way.
    CHECK(reg_read(rig.transport, V::kIsr, 1) == V::kIsrConfig);
    CHECK(reg_read(rig.transport, V::kIsr, 1) == 0);
    CHECK_FALSE(rig.irq.level);

    SECTION("a queue without a vector is silent") {
        REQUIRE(rig.set_queue_vector(1, V::kNoVector) == V::kNoVector);
        rig.dev.signal_used(1);
        CHECK(rig.msi.sent.size() == 3);
        CHECK_FALSE(rig.irq.level);
    }
    SECTION("masked: pending, then delivered once on unmask") {
        rig.bar_write32(2 * 16 + 12, 1);
        rig.dev.signal_used(1);
        rig.dev.signal_used(1);
        CHECK(rig.msi.sent.size() == 3);
        CHECK((rig.bar_read32(2048) & 0b100) != 0);  // the PBA
        rig.bar_write32(2 * 16 + 12, 0);
        CHECK(rig.msi.vectors() == std::vector<uint16_t>{1, 2, 0, 2});
        CHECK((rig.bar_read32(2048) & 0b100) == 0);
    }
    SECTION("function mask through configuration space") {
        rig.set_msix(true, true);
        rig.dev.signal_used(0);
        CHECK(rig.msi.sent.size() == 3);
        rig.set_msix(true, false);
        CHECK(rig.msi.vectors() == std::vector<uint16_t>{1, 2, 0, 1});
    }
    SECTION("bus mastering off: no MSI is sent, it waits") {
        rig.config_write16(PciConfigSpace::kCommand, 0);
        rig.dev.signal_used(0);
        rig.dev.signal_used(0);
        CHECK(rig.msi.sent.size() == 3);
        CHECK((rig.bar_read32(2048) & 0b10) != 0);
        rig.config_write16(PciConfigSpace::kCommand, PciConfigSpace::kCommandBusMaster);
        CHECK(rig.msi.vectors() == std::vector<uint16_t>{1, 2, 0, 1});
    }
    SECTION("a reset forgets what was pending") {
        rig.bar_write32(1 * 16 + 12, 1);
        rig.dev.signal_used(0);
        CHECK((rig.bar_read32(2048) & 0b10) != 0);
        reg_write(rig.transport, V::kStatus, 1, 0);
        CHECK(rig.bar_read32(2048) == 0);
        rig.bar_write32(1 * 16 + 12, 0);
        CHECK(rig.msi.sent.size() == 3);
    }
    SECTION("a vector changed between signals") {
        REQUIRE(rig.set_queue_vector(0, 2) == 2);
        rig.dev.signal_used(0);
        CHECK(rig.msi.vectors().back() == 2);
    }
    SECTION("a message outside the interrupt window is refused") {
        rig.bar_write32(1 * 16, 0x0010'0000);  // guest RAM: would be a DMA write
        rig.dev.signal_used(0);
        CHECK(rig.msi.sent.size() == 3);
        CHECK(rig.cap().table().refused_count() == 1);
    }
    SECTION("a broken device signals on the config vector") {
        rig.dev.signals()->signal_device_broken("test");
        CHECK(rig.msi.vectors().back() == 0);
        CHECK_FALSE(rig.irq.level);
    }
    SECTION("nothing after reset") {
        reg_write(rig.transport, V::kStatus, 1, 0);
        CHECK(rig.dev.signals() == nullptr);
        CHECK(rig.msi.sent.size() == 3);
    }
}

TEST_CASE("virtio-pci MSI-X: toggling hands the interrupt between MSI-X and INTx", "[virtio-pci][msix]") {
    MsixRig rig;
    for (unsigned e = 0; e < 3; ++e) rig.program(e);
    rig.place_queue(0, kRingPfn);
    reg_write(rig.transport, V::kStatus, 1, kReady);
    // INTx asserted with the ISR holding a used-buffer bit...
    rig.dev.signal_used(0);
    CHECK(rig.irq.level);
    // ...MSI-X on: the function must not assert INTx any more.
    rig.set_msix(true);
    CHECK_FALSE(rig.irq.level);
    CHECK(rig.set_queue_vector(0, 1) == 1);
    rig.dev.signal_used(0);
    CHECK(rig.msi.vectors() == std::vector<uint16_t>{1});
    // MSI-X off with the ISR unread: INTx again, the condition still holds.
    rig.set_msix(false);
    CHECK(rig.irq.level);
    CHECK(reg_read(rig.transport, V::kIsr, 1) == V::kIsrQueue);
    CHECK_FALSE(rig.irq.level);
    rig.dev.signal_used(0);
    CHECK(rig.irq.level);
    CHECK(rig.msi.sent.size() == 1);
}

TEST_CASE("virtio-pci MSI-X: the state dump shows vectors, masks and pending bits", "[virtio-pci][msix]") {
    MsixRig rig;
    rig.start();
    rig.bar_write32(2 * 16 + 12, 1);
    rig.dev.signal_used(1);
    const std::string report = rig.transport.state_report();
    CHECK_THAT(report, Catch::Contains("virtio-msix msix config_vector=0 queue_vectors=q0=1,q1=2\n"));
    CHECK_THAT(report, Catch::Contains("virtio-msix msix enabled=yes function_mask=no vectors=3 refused=0\n"));
    CHECK_THAT(report, Catch::Contains("virtio-msix msix vector 1 addr=0xfee00000 data=0x41 masked=no pending=no\n"));
    CHECK_THAT(report, Catch::Contains("virtio-msix msix vector 2 addr=0xfee00000 data=0x42 masked=yes pending=yes\n"));
}

TEST_CASE("virtio-pci MSI-X: --trace virtio shows table writes, vectors and every signal", "[virtio-pci][msix]") {
    MsixRig rig;
    rig.transport.set_trace(true);
    test_helpers::CapturedLog log;
    rig.start();
    rig.bar_write32(2 * 16 + 12, 1);
    rig.dev.signal_used(1);
    rig.bar_write32(2 * 16 + 12, 0);
    REQUIRE(rig.set_queue_vector(1, V::kNoVector) == V::kNoVector);
    rig.dev.signal_used(1);
    std::vector<std::string> traces;
    for (const std::string& line : log.matching("[info] trace ")) traces.push_back(line.substr(line.find("trace ")));
    const auto has = [&](const std::string& text) {
        return std::find(traces.begin(), traces.end(), text) != traces.end();
    };
    CHECK(has("trace virtio-msix msix-bar write off=0x28 entry 2 data len=4 val=0x00000042"));
    CHECK(has("trace virtio-msix msix enabled"));
    CHECK(has("trace virtio-msix msix q1 vector 0x2"));
    CHECK(has("trace virtio-msix msix-bar write off=0x2c entry 2 control len=4 val=0x00000001"));
    CHECK(has("trace virtio-msix irq used-buffer msix vector 2 pending (masked)"));
    CHECK(has("trace virtio-msix irq used-buffer not sent: no MSI-X vector mapped"));
}
