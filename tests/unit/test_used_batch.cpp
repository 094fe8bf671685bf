// UsedBatch: the one way devices give chains back, one used-index update
// and at most one interrupt per round.

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "recording_signals.h"
#include "ring_driver.h"
#include "virtio/split_ring.h"
#include "virtio/used_batch.h"
#include "virtio/virtqueue.h"
#include "vmm/core/guest_memory.h"

using namespace minikvm;
using Driver = test_helpers::RingDriver;
using test_helpers::RecordingSignals;

namespace {
constexpr uint32_t kPfn = 0x10;
constexpr uint16_t kSize = 16;
constexpr uint64_t kData = 1ULL << 20;
}  // namespace

TEST_CASE("used batch: a round is published at once, with one interrupt question", "[virtqueue]") {
    GuestMemory memory = GuestMemory::allocate(4ULL << 20);
    const bool event_idx = GENERATE(false, true);
    VirtQueue queue(memory, "q");
    queue.set_features(event_idx ? 1ULL << split_ring::kFeatureEventIdx : 0);
    REQUIRE(queue.configure(kPfn, kSize));
    Driver driver{memory, kPfn, kSize};
    for (uint16_t i = 0; i < 3; ++i) {
        driver.descriptor(i, kData + i * 0x1000, 64, split_ring::kDescWrite);
        driver.offer(i);
    }
    std::vector<uint16_t> heads;
    while (auto chain = queue.pop()) heads.push_back(chain->head);
    REQUIRE(heads.size() == 3);

    RecordingSignals signals;
    UsedBatch batch;
    batch.publish(queue, signals);  // nothing collected: nothing happens
    CHECK(signals.used == 0);
    CHECK(driver.used_index() == 0);

    batch.add(heads[2], 10);
    batch.add(heads[0], 20);
    CHECK(batch.size() == 2);
    CHECK(driver.used_index() == 0);  // nothing visible before publish
    batch.publish(queue, signals);
    CHECK(batch.empty());
    CHECK(driver.used_index() == 2);
    CHECK(driver.used_element(0) == std::pair<uint32_t, uint32_t>{2, 10});
    CHECK(driver.used_element(1) == std::pair<uint32_t, uint32_t>{0, 20});
    CHECK(signals.used == 1);

    // The driver asks for no interrupt: the chain is published, nobody told.
    if (event_idx) driver.set_used_event(5);
    else driver.set_avail_flags(split_ring::kAvailNoInterrupt);
    batch.add(heads[1], 30);
    batch.publish(queue, signals);
    CHECK(driver.used_index() == 3);
    CHECK(signals.used == 1);
}

TEST_CASE("used batch: clear() forgets a round (device reset)", "[virtqueue]") {
    GuestMemory memory = GuestMemory::allocate(4ULL << 20);
    VirtQueue queue(memory, "q");
    REQUIRE(queue.configure(kPfn, kSize));
    Driver driver{memory, kPfn, kSize};
    driver.descriptor(0, kData, 64, split_ring::kDescWrite);
    driver.offer(0);
    REQUIRE(queue.pop());
    RecordingSignals signals;
    UsedBatch batch;
    batch.add(0, 1);
    batch.clear();
    batch.publish(queue, signals);
    CHECK(driver.used_index() == 0);
    CHECK(signals.used == 0);
}
