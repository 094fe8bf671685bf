// virtio-rng: the device alone against a real queue in guest RAM, and once
// end to end through the legacy virtio-pci transport.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "captured_log.h"
#include "recording_signals.h"
#include "ring_driver.h"
#include "virtio/split_ring.h"
#include "virtio/virtio_pci_legacy.h"
#include "virtio/virtio_rng.h"
#include "virtio/virtqueue.h"
#include "vmm/core/guest_memory.h"

using namespace minikvm;
using Driver = test_helpers::RingDriver;
using test_helpers::CapturedLog;
using test_helpers::RecordingSignals;
using Catch::Matchers::Contains;

namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kRamSize = 16 * kMiB;
constexpr uint32_t kPfn = 0x10;
constexpr uint64_t kData = 2 * kMiB;
constexpr uint16_t kWrite = split_ring::kDescWrite;
constexpr uint16_t kNext = split_ring::kDescNext;

struct Rig {
    explicit Rig(uint64_t features = 0) {
        queues.emplace_back(memory, "rq");
        queues[0].set_features(features);
        REQUIRE(queues[0].configure(kPfn, VirtioRng::kQueueSize));
        rng.activate(features, queues, signals);
    }
    ~Rig() { rng.reset(); }

    std::vector<uint8_t> bytes(uint64_t address, size_t length) const {
        std::vector<uint8_t> out(length);
        REQUIRE(memory.read(address, out));
        return out;
    }

    GuestMemory memory = GuestMemory::allocate(kRamSize);
    std::vector<VirtQueue> queues;
    RecordingSignals signals;
    VirtioRng rng{"virtio-rng-test"};
    Driver driver{memory, kPfn, VirtioRng::kQueueSize};
};

bool all_zero(const std::vector<uint8_t>& bytes) {
    return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

TEST_CASE("virtio-rng: identity, no features of its own, no configuration", "[virtio-rng]") {
    VirtioRng rng("r");
    CHECK(rng.device_type() == VirtioDeviceType::Entropy);
    CHECK(rng.kind().pci_device_id == 0x1005);
    CHECK(rng.queue_count() == 1);
    CHECK(rng.device_features() ==
          ((1ULL << split_ring::kFeatureIndirectDesc) | (1ULL << split_ring::kFeatureEventIdx)));
    CHECK(rng.config_size() == 0);
    const PciIdentity id = VirtioPciLegacy::identity_for(rng.kind());
    CHECK(id.subsystem_id == 4);
    CHECK(id.class_code == 0x00ff00);
}

TEST_CASE("virtio-rng: every writable buffer of a chain is filled; one interrupt per round", "[virtio-rng]") {
    Rig rig;
    rig.driver.descriptor(0, kData, 16, kWrite | kNext, 1);
    rig.driver.descriptor(1, kData + 0x1000, 4096, kWrite | kNext, 2);
    rig.driver.descriptor(2, kData + 0x3000, 100, kWrite);
    rig.driver.descriptor(3, kData + 0x4000, 64, kWrite);
    rig.driver.offer(0);
    rig.driver.offer(3);
    rig.rng.queue_notified(VirtioRng::kRequestQueue);

    CHECK(rig.driver.used_index() == 2);
    CHECK(rig.driver.used_element(0) == std::pair<uint32_t, uint32_t>{0, 16 + 4096 + 100});
    CHECK(rig.driver.used_element(1) == std::pair<uint32_t, uint32_t>{3, 64});
    CHECK(rig.signals.used == 1);  // two chains, one publication, one interrupt
    CHECK_FALSE(all_zero(rig.bytes(kData, 16)));
    CHECK_FALSE(all_zero(rig.bytes(kData + 0x1000, 4096)));
    CHECK_FALSE(all_zero(rig.bytes(kData + 0x3000, 100)));
    CHECK(rig.bytes(kData + 0x4000, 64) != rig.bytes(kData, 64));
    CHECK(rig.rng.stats().bytes == 16 + 4096 + 100 + 64);
    CHECK(rig.rng.stats().requests == 2);
}

TEST_CASE("virtio-rng: a chain gets at most kMaxBytesPerChain bytes", "[virtio-rng]") {
    Rig rig;
    const uint32_t big = VirtioRng::kMaxBytesPerChain + 4096;
    rig.driver.descriptor(0, kData, big, kWrite);
    rig.driver.offer(0);
    rig.rng.queue_notified(0);
    CHECK(rig.driver.used_element(0) == std::pair<uint32_t, uint32_t>{0, VirtioRng::kMaxBytesPerChain});
    // Nothing past the bound was touched.
    CHECK(all_zero(rig.bytes(kData + VirtioRng::kMaxBytesPerChain, 4096)));
}

TEST_CASE("virtio-rng: a chain with a device-readable buffer gets length 0, counted and logged", "[virtio-rng]") {
    Rig rig;
    CapturedLog log;
    rig.driver.descriptor(0, kData, 32, kNext, 1);  // driver-readable: 5.4.6.1 forbids it
    rig.driver.descriptor(1, kData + 0x1000, 32, kWrite);
    rig.driver.offer(0);
    rig.rng.queue_notified(0);
    CHECK(rig.driver.used_element(0) == std::pair<uint32_t, uint32_t>{0, 0});
    CHECK(all_zero(rig.bytes(kData + 0x1000, 32)));
    CHECK(rig.rng.stats().malformed == 1);
    CHECK(rig.signals.broken_count() == 0);  // the device goes on
    CHECK(log.count("warning", "virtio-rng-test: chain at head 0 has 1 device-readable buffer(s), which virtio "
                               "1.2 5.4.6.1 forbids; completed with used length 0") == 1);
    // The next request is served.
    rig.driver.descriptor(2, kData + 0x2000, 32, kWrite);
    rig.driver.offer(2);
    rig.rng.queue_notified(0);
    CHECK(rig.driver.used_element(1) == std::pair<uint32_t, uint32_t>{2, 32});
}

TEST_CASE("virtio-rng: buffers posted before DRIVER_OK are served at activation", "[virtio-rng]") {
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    std::vector<VirtQueue> queues;
    queues.emplace_back(memory, "rq");
    REQUIRE(queues[0].configure(kPfn, VirtioRng::kQueueSize));
    Driver driver{memory, kPfn, VirtioRng::kQueueSize};
    driver.descriptor(0, kData, 8, kWrite);
    driver.offer(0);
    RecordingSignals signals;
    VirtioRng rng("r");
    rng.activate(0, queues, signals);
    CHECK(driver.used_element(0) == std::pair<uint32_t, uint32_t>{0, 8});
    rng.reset();
}

TEST_CASE("virtio-rng: a ring-rule violation stops the device through the transport", "[virtio-rng]") {
    Rig rig;
    CapturedLog log;
    rig.driver.descriptor(0, kData, 8, kWrite | kNext, 0);  // loops onto itself
    rig.driver.offer(0);
    rig.rng.queue_notified(0);
    REQUIRE(rig.signals.broken_count() == 1);
    CHECK_THAT(rig.signals.broken[0], Contains("2.7.5.2"));
    CHECK(rig.driver.used_index() == 0);
}

TEST_CASE("virtio-rng: end to end through the legacy transport", "[virtio-rng]") {
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    VirtioRng rng("virtio-rng0");
    VirtioPciLegacy transport(rng, memory, "virtio-rng0");
    CHECK(transport.bar_size() == VirtioPciLegacy::kMinBarSize);  // no configuration space
    const auto write = [&](uint32_t offset, uint32_t width, uint32_t value) {
        uint8_t bytes[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                            static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
        transport.write(offset, std::span<const uint8_t>(bytes, width));
    };
    write(VirtioPciLegacy::kStatus, 1, VirtioPciLegacy::kStatusAcknowledge | VirtioPciLegacy::kStatusDriver);
    write(VirtioPciLegacy::kQueueSelect, 2, 0);
    write(VirtioPciLegacy::kQueuePfn, 4, kPfn);
    write(VirtioPciLegacy::kStatus, 1,
          VirtioPciLegacy::kStatusAcknowledge | VirtioPciLegacy::kStatusDriver | VirtioPciLegacy::kStatusDriverOk);
    Driver driver{memory, kPfn, VirtioRng::kQueueSize};
    driver.descriptor(0, kData, 64, kWrite);
    driver.offer(0);
    write(VirtioPciLegacy::kQueueNotify, 2, 0);
    CHECK(driver.used_element(0) == std::pair<uint32_t, uint32_t>{0, 64});
    CHECK_THAT(transport.state_report(), Contains("virtio-rng0 requests=1 bytes=64 malformed=0"));
    CHECK_THAT(transport.state_report(), Contains("type=entropy"));
}
