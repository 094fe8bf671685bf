// The legacy virtio-pci transport against a fake VirtioDevice and real guest
// RAM: registers at every width, feature negotiation, queue placement, kicks,
// the status machine, the ISR and INTx, and the notify ioeventfds.

#include <catch2/catch.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "captured_log.h"
#include "test_helpers.h"
#include "virtio_pci_rig.h"
#include "devices/irq_line.h"
#include "devices/pci_config_space.h"
#include "devices/pci_host_bridge.h"
#include "virtio/notify_eventfds.h"
#include "virtio/virtio_device.h"
#include "virtio/virtio_pci_legacy.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/guest_memory.h"

using namespace minikvm;

namespace {

using namespace virtio_pci_rig;
using test_helpers::CapturedLog;
using test_helpers::FakeIrq;

// Real eventfds (what KVM would signal) heard by a real event loop; records
// what is registered.
class FakeEventfds : public NotifyEventfds {
public:
    struct Entry {
        int fd;
        uint16_t port;
        uint32_t length;
        uint64_t datamatch;
    };

    UniqueFd add_io_eventfd(uint16_t port, uint32_t length, uint64_t datamatch) override {
        if (fail_after >= 0 && static_cast<int>(added.size()) >= fail_after) throw std::runtime_error("no more");
        UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        REQUIRE(fd.valid());
        std::lock_guard lock(mutex);
        added.push_back({fd.get(), port, length, datamatch});
        live[fd.get()] = added.back();
        return fd;
    }
    void remove_io_eventfd(int fd, uint16_t port, uint32_t length, uint64_t datamatch) override {
        std::lock_guard lock(mutex);
        auto it = live.find(fd);
        REQUIRE(it != live.end());
        CHECK(it->second.port == port);
        CHECK(it->second.length == length);
        CHECK(it->second.datamatch == datamatch);
        live.erase(it);
    }

    // Live registrations as (port, datamatch), sorted by datamatch.
    std::vector<std::pair<uint16_t, uint64_t>> live_ports() {
        std::lock_guard lock(mutex);
        std::map<uint64_t, uint16_t> by_queue;
        for (const auto& [fd, entry] : live) {
            CHECK(entry.length == 2);
            by_queue[entry.datamatch] = entry.port;
        }
        std::vector<std::pair<uint16_t, uint64_t>> out;
        for (const auto& [queue, port] : by_queue) out.emplace_back(port, queue);
        return out;
    }
    // The fd KVM would signal for a kick of `queue`.
    int fd_for(uint64_t queue) {
        std::lock_guard lock(mutex);
        for (const auto& [fd, entry] : live)
            if (entry.datamatch == queue) return fd;
        return -1;
    }

    int fail_after = -1;
    std::mutex mutex;
    std::vector<Entry> added;
    std::map<int, Entry> live;
    EventLoop loop;
};

template <typename Predicate>
bool wait_for(Predicate predicate) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
        if (predicate()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return predicate();
}

}  // namespace

TEST_CASE("virtio-pci legacy: PCI identity per device type", "[virtio-pci]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    const auto check = [](VirtioDeviceType type, uint16_t device_id, uint32_t class_code) {
        const PciIdentity id = V::identity_for(kind_of(type));
        CHECK(id.vendor_id == 0x1af4);
        CHECK(id.device_id == device_id);
        CHECK(id.class_code == class_code);
        CHECK(id.revision == 0);
        CHECK(id.subsystem_vendor_id == 0x1af4);
        CHECK(id.subsystem_id == static_cast<uint16_t>(type));
    };
    check(VirtioDeviceType::Net, 0x1000, 0x020000);
    check(VirtioDeviceType::Block, 0x1001, 0x010000);
    check(VirtioDeviceType::Console, 0x1003, 0x078000);
    check(VirtioDeviceType::Entropy, 0x1005, 0x00ff00);
    // A device ID outside the transitional range (virtio 1.2 4.1.2.1).
    CHECK_THROWS_AS(V::identity_for(kind_of(static_cast<VirtioDeviceType>(9))), std::invalid_argument);

    // The identity lands in the transport's config space, read as the guest would.
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    FakeDevice block(VirtioDeviceType::Block);
    V transport(block, memory, "virtio-blk-test");
    uint8_t bytes[4];
    transport.config().read(PciConfigSpace::kVendorId, bytes);
    CHECK((bytes[0] | bytes[1] << 8) == 0x1af4);
    CHECK((bytes[2] | bytes[3] << 8) == 0x1001);
    transport.config().read(PciConfigSpace::kSubsystemVendorId, bytes);
    CHECK((bytes[0] | bytes[1] << 8) == 0x1af4);
    CHECK((bytes[2] | bytes[3] << 8) == 2);
    transport.config().read(PciConfigSpace::kRevision, bytes);
    CHECK(bytes[0] == 0);
    CHECK((bytes[1] | bytes[2] << 8 | bytes[3] << 16) == 0x010000);
}

TEST_CASE("virtio-pci legacy: BAR 0 is an I/O BAR sized for registers and config", "[virtio-pci]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    CHECK(V::bar_size_for(0) == 32);
    CHECK(V::bar_size_for(12) == 32);
    CHECK(V::bar_size_for(13) == 64);
    CHECK(V::bar_size_for(44) == 64);
    CHECK(V::bar_size_for(45) == 128);
    CHECK(V::bar_size_for(236) == 256);

    GuestMemory memory = GuestMemory::allocate(kRamSize);
    FakeDevice net(VirtioDeviceType::Net, 40);
    V transport(net, memory, "virtio-net-test");
    const std::vector<PciBar> bars = transport.bars();
    REQUIRE(bars.size() == 1);
    CHECK(bars[0].index == 0);
    CHECK(bars[0].kind == PciBarKind::Io);
    CHECK(bars[0].size == 64);
    CHECK(&bars[0].handler == static_cast<BusDevice*>(&transport));

    FakeDevice too_big(VirtioDeviceType::Net, 237);
    CHECK_THROWS_AS(V(too_big, memory, "too-big"), std::invalid_argument);
    FakeDevice bad_size(VirtioDeviceType::Console, 12, {64, 100});
    CHECK_THROWS_AS(V(bad_size, memory, "bad-size"), std::invalid_argument);
}

TEST_CASE("virtio-pci legacy: registers through the PCI host bridge", "[virtio-pci]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    IoBus io("io");
    MmioBus mmio("mmio");
    std::vector<FakeIrq*> lines;
    PciHostBridge bridge(io, mmio, [&](uint32_t) {
        auto line = std::make_unique<FakeIrq>();
        lines.push_back(line.get());
        return line;
    });
    Rig rig;
    const PciBdf bdf = bridge.register_device(rig.transport);
    const uint32_t base = rig.transport.config().bar_address(0);
    CHECK(base >= PciHostBridge::kIoWindowStart);
    // Enable I/O decoding as Linux's pci_enable_device does: config mechanism #1.
    const uint32_t address = 0x8000'0000u | uint32_t{bdf.device} << 11 | PciConfigSpace::kCommand;
    const uint8_t select[4] = {static_cast<uint8_t>(address), static_cast<uint8_t>(address >> 8),
                               static_cast<uint8_t>(address >> 16), static_cast<uint8_t>(address >> 24)};
    bridge.write(0, select);
    const uint8_t command[2] = {PciConfigSpace::kCommandIoEnable, 0};
    bridge.write(4, command);
    uint8_t bytes[4] = {};
    REQUIRE(io.read(base + V::kHostFeatures, bytes));
    CHECK((bytes[0] | bytes[1] << 8 | bytes[2] << 16 | uint32_t{bytes[3]} << 24) == 0x8000'0005u);
    CHECK_FALSE(io.read(base + rig.transport.bar_size(), std::span(bytes, 1)));  // the BAR ends there
    REQUIRE(lines.size() == 1);
}

TEST_CASE("virtio-pci legacy: feature negotiation keeps only offered low bits", "[virtio-pci]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    Rig rig;
    CHECK(reg_read(rig.transport, V::kHostFeatures, 4) == 0x8000'0005u);  // the high bits are not legacy's
    reg_write(rig.transport, V::kGuestFeatures, 4, 0xffff'ffff);
    CHECK(reg_read(rig.transport, V::kGuestFeatures, 4) == 0x8000'0005u);
    reg_write(rig.transport, V::kGuestFeatures, 4, 0x0000'0006);
    CHECK(reg_read(rig.transport, V::kGuestFeatures, 4) == 0x4u);

    rig.driver_ok();
    CHECK(rig.dev.negotiated_features == 0x4u);
    // After DRIVER_OK the features are fixed.
    reg_write(rig.transport, V::kGuestFeatures, 4, 0x1);
    CHECK(reg_read(rig.transport, V::kGuestFeatures, 4) == 0x4u);
}

TEST_CASE("virtio-pci legacy: ring features reach the queues", "[virtio-pci]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    FakeDevice device;
    device.features = (1ULL << 28) | (1ULL << 29);
    Rig rig(&device);
    reg_write(rig.transport, V::kGuestFeatures, 4, 1u << 29);
    rig.place_queue(0, kRingPfn);
    rig.driver_ok();
    REQUIRE(device.queues().size() == 2);
    CHECK(device.queues()[0].event_idx());
    CHECK_FALSE(device.queues()[0].indirect_descriptors());
}

TEST_CASE("virtio-pci legacy: queue select, size and PFN", "[virtio-pci]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    Rig rig;
    CHECK(reg_read(rig.transport, V::kQueueSize, 2) == 64);  // queue 0 selected after reset
    reg_write(rig.transport, V::kQueueSelect, 2, 1);
    CHECK(reg_read(rig.transport, V::kQueueSelect, 2) == 1);
    CHECK(reg_read(rig.transport, V::kQueueSize, 2) == 128);
    CHECK(reg_read(rig.transport, V::kQueuePfn, 4) == 0);  // not placed: Linux checks this

    reg_write(rig.transport, V::kQueuePfn, 4, kRingPfn2);
    CHECK(reg_read(rig.transport, V::kQueuePfn, 4) == kRingPfn2);
    reg_write(rig.transport, V::kQueueSelect, 2, 0);
    CHECK(reg_read(rig.transport, V::kQueuePfn, 4) == 0);

    SECTION("a queue that does not exist has size 0 and ignores its PFN") {
        reg_write(rig.transport, V::kQueueSelect, 2, 2);
        CHECK(reg_read(rig.transport, V::kQueueSize, 2) == 0);
        reg_write(rig.transport, V::kQueuePfn, 4, kRingPfn);
        CHECK(reg_read(rig.transport, V::kQueuePfn, 4) == 0);
        reg_write(rig.transport, V::kQueueSelect, 2, 0xffff);
        CHECK(reg_read(rig.transport, V::kQueueSize, 2) == 0);
        CHECK_FALSE(rig.transport.broken());
    }

    SECTION("the device gets configured VirtQueues at DRIVER_OK") {
        rig.driver_ok();
        REQUIRE(rig.dev.activations == 1);
        REQUIRE(rig.dev.queues().size() == 2);
        CHECK(rig.dev.ready_at_activation == std::vector<bool>{false, true});
        const VirtQueue& queue = rig.dev.queues()[1];
        CHECK(queue.pfn() == kRingPfn2);
        CHECK(queue.size() == 128);
        CHECK(queue.guest_address() == uint64_t{kRingPfn2} << 12);
    }

    SECTION("PFN 0 releases the queue") {
        reg_write(rig.transport, V::kQueueSelect, 2, 1);
        reg_write(rig.transport, V::kQueuePfn, 4, 0);
        CHECK(reg_read(rig.transport, V::kQueuePfn, 4) == 0);
        rig.driver_ok();
        CHECK(rig.dev.ready_at_activation == std::vector<bool>{false, false});
    }
}

TEST_CASE("virtio-pci legacy: notify reaches the device once it runs", "[virtio-pci]") {
    CapturedLog log;
    Rig rig;
    rig.place_queue(0, kRingPfn);
    rig.place_queue(1, kRingPfn2);

    reg_write(rig.transport, V::kQueueNotify, 2, 0);  // before DRIVER_OK: dropped
    CHECK(rig.dev.notified_copy().empty());

    rig.driver_ok();
    reg_write(rig.transport, V::kQueueNotify, 2, 1);
    reg_write(rig.transport, V::kQueueNotify, 2, 0);
    CHECK(rig.dev.notified_copy() == std::vector<unsigned>{1, 0});

    SECTION("a queue that does not exist: ignored, logged once") {
        reg_write(rig.transport, V::kQueueNotify, 2, 2);
        reg_write(rig.transport, V::kQueueNotify, 2, 7);
        CHECK(rig.dev.notified_copy().size() == 2);
        CHECK(log.count("warning", "does not exist") == 1);
    }
}

TEST_CASE("virtio-pci legacy: notify of a queue never set up is ignored", "[virtio-pci]") {
    CapturedLog log;
    Rig rig;
    rig.place_queue(0, kRingPfn);
    rig.driver_ok();
    reg_write(rig.transport, V::kQueueNotify, 2, 1);
    reg_write(rig.transport, V::kQueueNotify, 2, 1);
    CHECK(rig.dev.notified_copy().empty());
    CHECK(log.count("warning", "not set up") == 1);
    CHECK_FALSE(rig.transport.broken());
}

TEST_CASE("virtio-pci legacy: a ring outside RAM breaks the device until status 0", "[virtio-pci]") {
    CapturedLog log;
    Rig rig;
    reg_write(rig.transport, V::kStatus, 1, kHandshake);
    rig.place_queue(0, kRingPfn);
    rig.place_queue(1, kPfnOutsideRam);  // no crash, just broken
    CHECK(rig.transport.broken());
    CHECK((reg_read(rig.transport, V::kStatus, 1) & V::kStatusNeedsReset) != 0);
    CHECK(log.count("warning", "needs reset") == 1);

    rig.driver_ok();  // does not activate a broken device
    CHECK(rig.dev.activations == 0);
    reg_write(rig.transport, V::kQueueNotify, 2, 0);
    CHECK(rig.dev.notified_copy().empty());

    reg_write(rig.transport, V::kStatus, 1, 0);
    CHECK_FALSE(rig.transport.broken());
    CHECK(reg_read(rig.transport, V::kStatus, 1) == 0);
    // A fresh negotiation now works.
    reg_write(rig.transport, V::kStatus, 1, kHandshake);
    rig.place_queue(1, kRingPfn2);
    CHECK_FALSE(rig.transport.broken());
    rig.driver_ok();
    CHECK(rig.dev.activations == 1);
    reg_write(rig.transport, V::kQueueNotify, 2, 1);
    CHECK(rig.dev.notified_copy() == std::vector<unsigned>{1});
}

TEST_CASE("virtio-pci legacy: a device reporting itself broken stops being served", "[virtio-pci]") {
    CapturedLog log;
    Rig rig;
    rig.place_queue(0, kRingPfn);
    rig.driver_ok();
    REQUIRE(rig.dev.signals() != nullptr);
    rig.dev.signals()->signal_device_broken("queue 0: a ring rule");
    rig.dev.signals()->signal_device_broken("again");  // logged once
    CHECK(log.count("warning", "needs reset") == 1);
    CHECK(rig.transport.status() == (kReady | V::kStatusNeedsReset));
    // With DRIVER_OK set, NEEDS_RESET comes with a config-change interrupt.
    CHECK(rig.irq.level);

    reg_write(rig.transport, V::kQueueNotify, 2, 0);
    CHECK(rig.dev.notified_copy().empty());
    rig.dev.signal_used();
    CHECK(reg_read(rig.transport, V::kIsr, 1) == V::kIsrConfig);  // no queue bit while broken
    CHECK_FALSE(rig.irq.level);

    // The driver cannot clear NEEDS_RESET except by resetting.
    reg_write(rig.transport, V::kStatus, 1, kReady);
    CHECK((rig.transport.status() & V::kStatusNeedsReset) != 0);
    reg_write(rig.transport, V::kStatus, 1, 0);
    CHECK(rig.transport.status() == 0);
}

TEST_CASE("virtio-pci legacy: status 0 resets everything", "[virtio-pci]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    Rig rig;
    reg_write(rig.transport, V::kGuestFeatures, 4, 0x5);
    rig.place_queue(1, kRingPfn2);
    rig.driver_ok();
    rig.dev.signal_used();
    REQUIRE(rig.irq.level);
    const int resets_before = rig.dev.resets;

    reg_write(rig.transport, V::kStatus, 1, 0);
    CHECK(rig.dev.resets == resets_before + 1);
    CHECK_FALSE(rig.irq.level);
    CHECK(reg_read(rig.transport, V::kStatus, 1) == 0);
    CHECK(reg_read(rig.transport, V::kIsr, 1) == 0);
    CHECK(reg_read(rig.transport, V::kGuestFeatures, 4) == 0);
    CHECK(reg_read(rig.transport, V::kQueueSelect, 2) == 0);
    reg_write(rig.transport, V::kQueueSelect, 2, 1);
    CHECK(reg_read(rig.transport, V::kQueuePfn, 4) == 0);

    // Kicks wait for the next DRIVER_OK, which activates again.
    reg_write(rig.transport, V::kQueueNotify, 2, 1);
    CHECK(rig.dev.notified_copy().empty());
    rig.place_queue(1, kRingPfn2);
    rig.driver_ok();
    CHECK(rig.dev.activations == 2);
    CHECK(rig.dev.negotiated_features == 0);
}

TEST_CASE("virtio-pci legacy: DRIVER_OK activates once", "[virtio-pci]") {
    CapturedLog log;
    Rig rig;
    rig.driver_ok();
    rig.driver_ok();
    reg_write(rig.transport, V::kStatus, 1, kReady | V::kStatusFailed);
    CHECK(rig.dev.activations == 1);
    CHECK(reg_read(rig.transport, V::kStatus, 1) == (kReady | V::kStatusFailed));  // FAILED accepted

    SECTION("out of order: accepted, logged at debug") {
        reg_write(rig.transport, V::kStatus, 1, 0);
        reg_write(rig.transport, V::kStatus, 1, V::kStatusDriverOk);
        CHECK(rig.dev.activations == 2);
        CHECK(log.count("debug", "without ACKNOWLEDGE|DRIVER") == 1);
    }
    SECTION("PFN writes after DRIVER_OK are ignored") {
        rig.place_queue(0, kRingPfn);
        CHECK(reg_read(rig.transport, V::kQueuePfn, 4) == 0);
        CHECK(log.count("warning", "after DRIVER_OK") == 1);
    }
}

TEST_CASE("virtio-pci legacy: used-buffer interrupt, ISR read clears and lowers", "[virtio-pci]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    FakeDevice device;
    device.signal_on_notify = true;
    Rig rig(&device);
    rig.place_queue(0, kRingPfn);

    // No interrupts before activation.
    CHECK(reg_read(rig.transport, V::kIsr, 1) == 0);
    rig.driver_ok();
    CHECK_FALSE(rig.irq.level);

    reg_write(rig.transport, V::kQueueNotify, 2, 0);  // the device signals from inside queue_notified
    CHECK(rig.irq.level);
    device.signal_used();
    device.signals()->signal_config_change();
    CHECK(rig.irq.rising_edges == 1);  // one level, not one edge per request
    CHECK(reg_read(rig.transport, V::kIsr, 1) == (V::kIsrQueue | V::kIsrConfig));
    CHECK_FALSE(rig.irq.level);
    CHECK(reg_read(rig.transport, V::kIsr, 1) == 0);

    device.signal_used();
    CHECK(rig.irq.level);
    CHECK(rig.irq.rising_edges == 2);
    // A narrow-to-wide read covering the ISR clears it too.
    CHECK(reg_read(rig.transport, V::kStatus, 2) == (kReady | V::kIsrQueue << 8));
    CHECK_FALSE(rig.irq.level);

    SECTION("signals from another thread") {
        std::thread worker([&] {
            for (int i = 0; i < 1000; ++i) device.signal_used();
        });
        for (int i = 0; i < 1000; ++i) (void)reg_read(rig.transport, V::kIsr, 1);
        worker.join();
        (void)reg_read(rig.transport, V::kIsr, 1);
        CHECK_FALSE(rig.irq.level);
    }
}

TEST_CASE("virtio-pci legacy: register widths", "[virtio-pci]") {
    CapturedLog log;
    Rig rig;
    reg_write(rig.transport, V::kGuestFeatures, 4, 0x8000'0005);

    // Narrow reads give the matching bytes of the wider register.
    CHECK(reg_read(rig.transport, V::kHostFeatures, 1) == 0x05);
    CHECK(reg_read(rig.transport, V::kHostFeatures + 3, 1) == 0x80);
    CHECK(reg_read(rig.transport, V::kHostFeatures + 2, 2) == 0x8000);
    CHECK(reg_read(rig.transport, V::kQueueSize + 1, 1) == 0);
    // A 4-byte read across two registers: queue size, then queue select.
    reg_write(rig.transport, V::kQueueSelect, 2, 1);
    CHECK(reg_read(rig.transport, V::kQueueSize, 4) == (128u | 1u << 16));
    CHECK(reg_read(rig.transport, V::kQueueNotify, 2) == 0);  // write-only

    // A narrow write covering the low byte is zero-extended.
    reg_write(rig.transport, V::kQueueSelect, 1, 0);
    CHECK(reg_read(rig.transport, V::kQueueSelect, 2) == 0);
    reg_write(rig.transport, V::kGuestFeatures, 1, 0x04);
    CHECK(reg_read(rig.transport, V::kGuestFeatures, 4) == 0x04);
    // One not covering the low byte is ignored.
    reg_write(rig.transport, V::kQueueSelect + 1, 1, 0x01);
    CHECK(reg_read(rig.transport, V::kQueueSelect, 2) == 0);
    reg_write(rig.transport, V::kGuestFeatures + 1, 2, 0xffff);
    CHECK(reg_read(rig.transport, V::kGuestFeatures, 4) == 0x04);
    // A 4-byte write at 16 writes notify and status (and not the read-only ISR).
    rig.place_queue(0, kRingPfn);
    reg_write(rig.transport, V::kQueueNotify, 4, 0x0000 | uint32_t{kReady} << 16 | 0xffu << 24);
    CHECK(rig.dev.activations == 1);
    CHECK(reg_read(rig.transport, V::kStatus, 1) == kReady);
}

TEST_CASE("virtio-pci legacy: writes to read-only registers are ignored", "[virtio-pci]") {
    CapturedLog log;
    Rig rig;
    reg_write(rig.transport, V::kHostFeatures, 4, 0);
    CHECK(reg_read(rig.transport, V::kHostFeatures, 4) == 0x8000'0005u);
    reg_write(rig.transport, V::kQueueSize, 2, 16);
    CHECK(reg_read(rig.transport, V::kQueueSize, 2) == 64);
    rig.place_queue(0, kRingPfn);
    rig.driver_ok();
    rig.dev.signal_used();
    reg_write(rig.transport, V::kIsr, 1, 0);
    CHECK(rig.irq.level);  // writing the ISR does not acknowledge
    CHECK(reg_read(rig.transport, V::kIsr, 1) == V::kIsrQueue);
    CHECK(log.count("warning", "read-only") == 1);
}

TEST_CASE("virtio-pci legacy: device config space at every width, with bounds", "[virtio-pci]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    Rig rig;  // 12 config bytes: 0xa0..0xab, BAR of 32
    const auto& bytes = rig.dev.config_bytes();
    CHECK(reg_read(rig.transport, V::kConfig, 1) == 0xa0);
    CHECK(reg_read(rig.transport, V::kConfig + 1, 2) == 0xa2a1);
    CHECK(reg_read(rig.transport, V::kConfig + 3, 4) == 0xa6a5a4a3u);
    CHECK(reg_read(rig.transport, V::kConfig + 8, 4) == 0xabaaa9a8u);
    // Past the end: the in-bounds part from the device, the rest 0.
    CHECK(reg_read(rig.transport, V::kConfig + 10, 4) == 0x0000abaau);
    CHECK(reg_read(rig.transport, V::kConfig + 11, 1) == 0xab);
    CHECK(reg_read(rig.transport, V::kConfig + 12, 4) == 0);
    // Straddling the ISR and config.
    CHECK(reg_read(rig.transport, V::kIsr, 2) == 0xa000);

    reg_write(rig.transport, V::kConfig, 1, 0x11);
    reg_write(rig.transport, V::kConfig + 2, 2, 0x3322);
    reg_write(rig.transport, V::kConfig + 4, 4, 0x77665544);
    reg_write(rig.transport, V::kConfig + 10, 4, 0xddccbbaa);  // only 0xaa 0xbb land
    reg_write(rig.transport, V::kConfig + 12, 4, 0xffffffff);  // nothing lands
    CHECK(bytes[0] == 0x11);
    CHECK(bytes[1] == 0xa1);
    CHECK(bytes[2] == 0x22);
    CHECK(bytes[3] == 0x33);
    CHECK(reg_read(rig.transport, V::kConfig + 4, 4) == 0x77665544u);
    CHECK(bytes[10] == 0xaa);
    CHECK(bytes[11] == 0xbb);
    CHECK(bytes.size() == 12);
}

TEST_CASE("virtio-pci legacy: notify ioeventfds follow BAR 0", "[virtio-pci]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    FakeEventfds eventfds;
    FakeDevice device;
    FakeIrq irq;
    device.signal_on_notify = true;
    {
        V transport(device, memory, "virtio-eventfd-test", &eventfds, &eventfds.loop);
        transport.connect_intx(irq);
        CHECK(eventfds.live_ports().empty());

        transport.bar_mapping_changed(0, 0xc000);
        using Ports = std::vector<std::pair<uint16_t, uint64_t>>;
        CHECK(eventfds.live_ports() == Ports{{0xc010, 0}, {0xc010, 1}});
        CHECK(transport.eventfd_count() == 2);
        transport.bar_mapping_changed(1, 0xd000);  // another BAR: nothing to do with kicks
        CHECK(eventfds.live_ports().size() == 2);

        transport.bar_mapping_changed(0, 0xc040);  // moved
        CHECK(eventfds.live_ports() == Ports{{0xc050, 0}, {0xc050, 1}});
        CHECK(eventfds.added.size() == 4);

        // A kick KVM completed in the kernel reaches the device on the loop.
        reg_write(transport, V::kQueueSelect, 2, 1);
        reg_write(transport, V::kQueuePfn, 4, kRingPfn2);
        reg_write(transport, V::kStatus, 1, kReady);
        transport.set_trace(true);
        const uint64_t one = 1;
        REQUIRE(::write(eventfds.fd_for(1), &one, sizeof one) == sizeof one);
        CHECK(wait_for([&] { return device.notified_copy() == std::vector<unsigned>{1}; }));
        CHECK(wait_for([&] { return irq.level; }));
        CHECK(log.count("trace virtio-eventfd-test notify q=1 eventfd") == 1);  // the trace tells the paths apart
        transport.set_trace(false);

        transport.bar_mapping_changed(0, std::nullopt);  // unmapped
        CHECK(eventfds.live_ports().empty());
        CHECK(transport.eventfd_count() == 0);
        transport.bar_mapping_changed(0, 0xc000);
        CHECK(eventfds.live_ports().size() == 2);
    }
    // Destruction removes them and resets the device.
    CHECK(eventfds.live_ports().empty());
    CHECK(device.signals() == nullptr);
}

TEST_CASE("virtio-pci legacy: failing eventfd setup falls back to trapped kicks", "[virtio-pci]") {
    CapturedLog log;
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    FakeEventfds eventfds;
    eventfds.fail_after = 1;  // the second queue's eventfd fails
    FakeDevice device;
    V transport(device, memory, "virtio-fallback-test", &eventfds, &eventfds.loop);
    transport.bar_mapping_changed(0, 0xc000);
    CHECK(eventfds.live_ports().empty());  // all or nothing
    CHECK(log.count("warning", "slow path") == 1);

    reg_write(transport, V::kQueuePfn, 4, kRingPfn);
    reg_write(transport, V::kStatus, 1, kReady);
    reg_write(transport, V::kQueueNotify, 2, 0);
    CHECK(device.notified_copy() == std::vector<unsigned>{0});
}
