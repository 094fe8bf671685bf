// What the legacy virtio-pci transport offers driver developers: the
// `--trace virtio` lines (and only while on), the state report, and the
// never-reached-DRIVER_OK warning.

#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "captured_log.h"
#include "ring_driver.h"
#include "virtio_pci_rig.h"
#include "virtio/virtio_pci_legacy.h"

using namespace minikvm;
using namespace virtio_pci_rig;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::StartsWith;
using test_helpers::CapturedLog;
using test_helpers::RingDriver;

namespace {

constexpr uint64_t kData = 0x20'0000;

// The trace lines logged so far, without spdlog's "[time] [logger] [info] ".
std::vector<std::string> traces(const CapturedLog& log) {
    std::vector<std::string> out;
    for (const std::string& line : log.matching("[info] trace ")) out.push_back(line.substr(line.find("trace ")));
    return out;
}

std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// A device that checks, as its state lines are asked for (in the same
// report that reads its queues), that its own threads could not take its
// lock now: the transport holds it.
class InspectedDevice : public FakeDevice {
public:
    std::string state_lines() const override {
        std::thread other([this] {
            std::unique_lock attempt(device_lock(), std::try_to_lock);
            lock_was_free = attempt.owns_lock();
        });
        other.join();
        ++inspections;
        return {};
    }
    mutable std::atomic<int> inspections{0};
    mutable std::atomic<bool> lock_was_free{true};
};

}  // namespace

// --- tracing ----------------------------------------------------------------------------------

TEST_CASE("virtio-pci trace: the driver's handshake, line by line", "[virtio-pci][trace]") {
    CapturedLog log;
    Rig rig;
    rig.transport.set_trace(true);
    CHECK(rig.transport.trace());

    reg_write(rig.transport, V::kStatus, 1, V::kStatusAcknowledge);
    CHECK(reg_read(rig.transport, V::kHostFeatures, 4) == 0x8000'0005u);
    reg_write(rig.transport, V::kStatus, 1, kHandshake);
    reg_write(rig.transport, V::kGuestFeatures, 4, 0x4);
    rig.place_queue(0, kRingPfn);
    reg_write(rig.transport, V::kQueueNotify, 2, 0);  // too early
    rig.driver_ok();
    reg_write(rig.transport, V::kQueueNotify, 2, 0);

    CHECK(traces(log) == std::vector<std::string>{
                             "trace virtio-test write off=18 status len=1 val=0x01",
                             "trace virtio-test status 0x00 -> 0x01 ACKNOWLEDGE",
                             "trace virtio-test read  off=0 host_features len=4 val=0x80000005",
                             "trace virtio-test write off=18 status len=1 val=0x03",
                             "trace virtio-test status 0x01 -> 0x03 ACKNOWLEDGE|DRIVER",
                             "trace virtio-test write off=4 guest_features len=4 val=0x00000004",
                             "trace virtio-test write off=14 queue_select len=2 val=0x0000",
                             "trace virtio-test write off=8 queue_pfn len=4 val=0x00000010",
                             "trace virtio-test q0 configure pfn=0x10 size=64 desc=0x10000 avail=0x10400 "
                             "used=0x11000",
                             "trace virtio-test write off=16 queue_notify len=2 val=0x0000",
                             "trace virtio-test notify q=0 trap ignored: before DRIVER_OK",
                             "trace virtio-test write off=18 status len=1 val=0x07",
                             "trace virtio-test status 0x03 -> 0x07 ACKNOWLEDGE|DRIVER|DRIVER_OK",
                             "trace virtio-test activate features=0x00000004 queues=q0",
                             "trace virtio-test write off=16 queue_notify len=2 val=0x0000",
                             "trace virtio-test notify q=0 trap",
                         });
}

TEST_CASE("virtio-pci trace: interrupts, ISR reads, reset and odd accesses", "[virtio-pci][trace]") {
    CapturedLog log;
    Rig rig;
    rig.place_queue(0, kRingPfn);
    rig.driver_ok();
    rig.transport.set_trace(true);

    rig.dev.signal_used();
    rig.dev.signals()->signal_config_change();
    CHECK(reg_read(rig.transport, V::kIsr, 1) == 3);
    CHECK(reg_read(rig.transport, V::kQueueNotify, 4) == (uint32_t{kReady} << 16));  // three registers at once
    CHECK(reg_read(rig.transport, V::kConfig + 2, 2) == 0xa3a2);
    reg_write(rig.transport, V::kQueueNotify, 2, 9);
    reg_write(rig.transport, V::kStatus, 1, 0);

    CHECK(traces(log) == std::vector<std::string>{
                             "trace virtio-test irq raise isr=0x1",
                             "trace virtio-test irq isr=0x3 already raised",
                             "trace virtio-test irq lower isr-read",
                             "trace virtio-test read  off=19 isr len=1 val=0x03",
                             "trace virtio-test read  off=16 queue_notify+status+isr len=4 val=0x00070000",
                             "trace virtio-test read  off=22 config+2 len=2 val=0xa3a2",
                             "trace virtio-test write off=16 queue_notify len=2 val=0x0009",
                             "trace virtio-test notify q=9 trap ignored: no such queue",
                             "trace virtio-test write off=18 status len=1 val=0x00",
                             "trace virtio-test reset status was 0x07",
                         });
}

TEST_CASE("virtio-pci trace: a broken device says why it ignores the driver", "[virtio-pci][trace]") {
    CapturedLog log;
    Rig rig;
    rig.transport.set_trace(true);
    rig.place_queue(1, kPfnOutsideRam);
    rig.driver_ok();
    reg_write(rig.transport, V::kQueueNotify, 2, 1);
    CHECK(log.count("trace virtio-test DRIVER_OK ignored: device needs reset") == 1);
    CHECK(log.count("trace virtio-test notify q=1 trap ignored: queue not set up") == 1);
}

TEST_CASE("virtio-pci trace: the queues follow the transport's switch", "[virtio-pci][trace]") {
    CapturedLog log;
    Rig rig;
    rig.place_queue(0, kRingPfn);
    rig.driver_ok();
    RingDriver driver{rig.memory, kRingPfn, 64};
    driver.descriptor(5, kData, 512, split_ring::kDescNext, 6);
    driver.descriptor(6, kData + 0x1000, 4096, split_ring::kDescWrite);
    driver.offer(5);
    driver.offer(5);
    VirtQueue& queue = rig.dev.queues()[0];

    REQUIRE(queue.pop());  // off: silent
    REQUIRE(queue.push(5, 1));
    CHECK(log.count("trace") == 0);

    rig.transport.set_trace(true);
    REQUIRE(queue.pop());
    REQUIRE(queue.push(5, 17));
    CHECK(traces(log) == std::vector<std::string>{
                             "trace virtio-test q0 pop head=5 bufs=[0x200000+512 r, 0x201000+4096 w] avail_idx=2",
                             "trace virtio-test q0 push head=5 len=17 used_idx=2",
                         });
}

TEST_CASE("virtio-pci trace: nothing at all while off", "[virtio-pci][trace]") {
    CapturedLog log;
    Rig rig;
    CHECK_FALSE(rig.transport.trace());  // off by default
    SECTION("never on") {}
    SECTION("turned off again") {
        rig.transport.set_trace(true);
        rig.transport.set_trace(false);
    }
    reg_write(rig.transport, V::kStatus, 1, kHandshake);
    (void)reg_read(rig.transport, V::kHostFeatures, 4);
    rig.place_queue(0, kRingPfn);
    rig.driver_ok();
    reg_write(rig.transport, V::kQueueNotify, 2, 0);
    rig.dev.signal_used();
    (void)reg_read(rig.transport, V::kIsr, 1);
    reg_write(rig.transport, V::kStatus, 1, 0);
    CHECK(log.count("trace") == 0);
}

// --- state report -----------------------------------------------------------------------------

TEST_CASE("virtio-pci state report: a device the driver has not touched", "[virtio-pci][state]") {
    Rig rig;
    CHECK_FALSE(rig.transport.pci_address());
    CHECK(split_lines(rig.transport.state_report()) ==
          std::vector<std::string>{
              "virtio-test pci=none type=console status=0x00 none activated=no ever_driver_ok=no",
              "virtio-test features offered=0x80000005 negotiated=0x00000000 unofferable_high=0x3",
              "virtio-test isr=0x00 intx=deasserted kicks=trap",
              "virtio-test broken=no",
              "virtio-test q0 size=64 not placed",
              "virtio-test q1 size=128 not placed",
          });
}

TEST_CASE("virtio-pci state report: a running device with a chain in flight", "[virtio-pci][state]") {
    FakeDevice device;
    device.features = 0x8000'0005u | (1u << split_ring::kFeatureEventIdx);
    Rig rig(&device);
    rig.transport.pci_address_assigned(PciBdf{0, 3, 0});
    CHECK(rig.transport.pci_address() == PciBdf{0, 3, 0});
    reg_write(rig.transport, V::kGuestFeatures, 4, 0x4 | (1u << split_ring::kFeatureEventIdx));
    rig.place_queue(0, kRingPfn);
    rig.driver_ok();

    RingDriver driver{rig.memory, kRingPfn, 64};
    driver.descriptor(0, kData, 8);
    driver.descriptor(1, kData, 8);
    driver.offer(0);
    driver.offer(1);
    driver.offer(1);  // three available, the device takes two and returns one
    driver.set_used_event(4);
    VirtQueue& queue = rig.dev.queues()[0];
    REQUIRE(queue.pop());
    REQUIRE(queue.pop());
    REQUIRE(queue.push(0, 8));
    rig.dev.signal_used();

    const std::string report = rig.transport.state_report();
    CHECK_THAT(report, EndsWith("\n"));
    CHECK(split_lines(report) ==
          std::vector<std::string>{
              "virtio-test pci=00:03.0 type=console status=0x07 ACKNOWLEDGE|DRIVER|DRIVER_OK activated=yes "
              "ever_driver_ok=yes",
              "virtio-test features offered=0xa0000005 negotiated=0x20000004",
              "virtio-test isr=0x01 intx=asserted kicks=trap",
              "virtio-test broken=no",
              "virtio-test q0 pfn=0x10 size=64 next_avail=2 seen_avail_idx=3 used_idx=1 in_flight=1 guest: "
              "avail.idx=3 pending=1 avail.flags=0x0 used.idx=1 used.flags=0x0 used_event=4 avail_event=2 broken=no",
              "virtio-test q1 size=128 not placed",
          });
}

TEST_CASE("virtio-pci state report: broken transport and queue give their reasons", "[virtio-pci][state]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    Rig rig;
    reg_write(rig.transport, V::kStatus, 1, kHandshake);
    rig.place_queue(1, kPfnOutsideRam);
    const std::vector<std::string> lines = split_lines(rig.transport.state_report());
    REQUIRE(lines.size() == 6);
    CHECK(lines[0] == "virtio-test pci=none type=console status=0x43 ACKNOWLEDGE|DRIVER|NEEDS_RESET activated=no "
                      "ever_driver_ok=no");
    CHECK_THAT(lines[3], StartsWith("virtio-test broken=yes reason: queue 1 at PFN 0x100000: virtio 1.2 2.7.2: "));
    CHECK_THAT(lines[5], StartsWith("virtio-test q1 pfn=0x100000 size=128 next_avail=0 seen_avail_idx=0 used_idx=0 "
                                    "in_flight=0 broken=yes reason: virtio 1.2 2.7.2: the 128-entry ring"));

    reg_write(rig.transport, V::kStatus, 1, 0);  // the reason goes with the reset
    CHECK(split_lines(rig.transport.state_report())[3] == "virtio-test broken=no");
}

TEST_CASE("virtio-pci state report: the device's lock is held while it is read", "[virtio-pci][state]") {
    InspectedDevice device;
    Rig rig(&device);
    (void)rig.transport.state_report();
    CHECK(device.inspections == 1);
    CHECK_FALSE(device.lock_was_free);
}

TEST_CASE("virtio-pci state report: safe while the guest and the device run", "[virtio-pci][state]") {
    FakeDevice device;
    device.signal_on_notify = true;
    Rig rig(&device);
    rig.place_queue(0, kRingPfn);
    rig.driver_ok();
    // The guest and the device keep going until the reports are done, so
    // every report overlaps them (a fixed guest loop could end first).
    std::atomic<bool> done{false};
    std::atomic<int> guest_rounds{0};
    std::thread guest([&] {
        while (!done) {
            reg_write(rig.transport, V::kQueueNotify, 2, 0);
            (void)reg_read(rig.transport, V::kIsr, 1);
            ++guest_rounds;
        }
    });
    std::thread device_thread([&] {
        while (!done) rig.dev.signals()->signal_config_change();
    });
    while (guest_rounds == 0) std::this_thread::yield();
    for (int i = 0; i < 500; ++i) CHECK_THAT(rig.transport.state_report(), Contains("virtio-test q0 pfn=0x10"));
    done = true;
    guest.join();
    device_thread.join();
    CHECK(guest_rounds > 0);
}

// --- never reached DRIVER_OK ------------------------------------------------------------------

TEST_CASE("virtio-pci: DRIVER_OK once is remembered across resets", "[virtio-pci][state]") {
    Rig rig;
    CHECK_FALSE(rig.transport.ever_reached_driver_ok());
    reg_write(rig.transport, V::kStatus, 1, kHandshake);
    CHECK(rig.transport.status_bits_ever_set() == kHandshake);
    CHECK_FALSE(rig.transport.ever_reached_driver_ok());
    rig.driver_ok();
    CHECK(rig.transport.ever_reached_driver_ok());
    reg_write(rig.transport, V::kStatus, 1, 0);
    CHECK(rig.transport.ever_reached_driver_ok());
    CHECK(rig.transport.status_bits_ever_set() == kReady);
    CHECK_FALSE(rig.transport.never_driver_ok_warning());
}

TEST_CASE("virtio-pci: the never-DRIVER_OK warning names the device and what to check", "[virtio-pci][state]") {
    CapturedLog log;  // keeps the expected warnings off the test output
    Rig rig;
    SECTION("not on a bus: the name alone") {
        CHECK(rig.transport.never_driver_ok_warning() ==
              "virtio-test never reached DRIVER_OK: no guest driver touched it: are CONFIG_VIRTIO_PCI (with "
              "CONFIG_VIRTIO_PCI_LEGACY) and CONFIG_VIRTIO_CONSOLE enabled in the guest kernel?");
    }
    SECTION("with its address; the guest found it but had no driver") {
        rig.transport.pci_address_assigned(PciBdf{0, 1, 0});
        reg_write(rig.transport, V::kStatus, 1, V::kStatusAcknowledge);
        reg_write(rig.transport, V::kStatus, 1, 0);  // virtio-pci resets when no driver binds
        CHECK(rig.transport.never_driver_ok_warning() ==
              "virtio-test 00:01.0 never reached DRIVER_OK: the guest found it but no driver took it: is "
              "CONFIG_VIRTIO_CONSOLE enabled in the guest kernel?");
    }
    SECTION("the driver failed") {
        reg_write(rig.transport, V::kStatus, 1, kHandshake | V::kStatusFailed);
        CHECK_THAT(*rig.transport.never_driver_ok_warning(),
                   Contains("its guest driver gave up (status bits seen: ACKNOWLEDGE|DRIVER|FAILED)"));
    }
}
