// What the virtqueue engine offers for debugging drivers: trace lines for
// configure, pop, push and suppressed interrupts (only while the owner's
// flag is on), and read-only views of its indices and of the guest's rings.

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <string>

#include "captured_log.h"
#include "ring_driver.h"
#include "virtio/split_ring.h"
#include "virtio/virtqueue.h"
#include "vmm/core/guest_memory.h"

using namespace minikvm;
using Catch::Matchers::Contains;
using test_helpers::CapturedLog;
using test_helpers::RingDriver;

namespace {

constexpr uint64_t kRamSize = 16ULL << 20;
constexpr uint32_t kRingPfn = 0x10;      // the ring at 64 KiB
constexpr uint64_t kData = 0x20'0000;    // buffers from 2 MiB
constexpr uint16_t kNext = split_ring::kDescNext;
constexpr uint16_t kWrite = split_ring::kDescWrite;

// A queue whose trace switch the test holds, as a transport would.
struct TracedQueue {
    explicit TracedQueue(bool trace_on, uint64_t features = 0) : trace(trace_on) {
        queue.set_features(features);
        REQUIRE(queue.configure(kRingPfn, 8));
    }
    std::atomic<bool> trace;
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    VirtQueue queue{memory, "virtio-test0 q1", VirtQueueOptions{.trace = &trace}};
    RingDriver driver{memory, kRingPfn, 8};

    // A request as a block driver makes one: 16 bytes out, 512 in.
    void offer_request(uint16_t head) {
        driver.descriptor(head, kData, 16, kNext, static_cast<uint16_t>(head + 1));
        driver.descriptor(head + 1u, kData + 0x1000, 512, kWrite);
        driver.offer(head);
    }
};

}  // namespace

TEST_CASE("virtqueue trace: configure, pop and push each log one line", "[virtqueue][trace]") {
    CapturedLog log;
    TracedQueue q(true);
    q.offer_request(3);
    auto chain = q.queue.pop();
    REQUIRE(chain);
    REQUIRE(q.queue.push(chain->head, 17));

    const auto lines = log.matching("trace virtio-test0 q1 ");
    REQUIRE(lines.size() == 3);
    CHECK_THAT(lines[0], Contains("[info]") && Contains("configure pfn=0x10 size=8 desc=0x10000 avail=0x10080 "
                                                         "used=0x11000"));
    CHECK_THAT(lines[1], Contains("pop head=3 bufs=[0x200000+16 r, 0x201000+512 w] avail_idx=1"));
    CHECK_THAT(lines[2], Contains("push head=3 len=17 used_idx=1"));
}

TEST_CASE("virtqueue trace: nothing while the switch is off, or without one", "[virtqueue][trace]") {
    CapturedLog log;
    TracedQueue q(false);
    q.offer_request(0);
    auto chain = q.queue.pop();
    REQUIRE(chain);
    REQUIRE(q.queue.push(chain->head, 1));
    CHECK(log.lines().empty());

    // The owner flips its switch at any time; the queue follows.
    q.trace = true;
    q.offer_request(2);
    REQUIRE(q.queue.pop());
    CHECK(log.count("pop head=2") == 1);

    VirtQueue untraced(q.memory, "untraced");  // default options: no switch at all
    REQUIRE(untraced.configure(kRingPfn, 8));
    CHECK(log.count("untraced") == 0);
}

TEST_CASE("virtqueue trace: a long chain lists its first 16 buffers", "[virtqueue][trace]") {
    CapturedLog log;
    std::atomic<bool> trace{true};
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    VirtQueue queue(memory, "long", VirtQueueOptions{.trace = &trace});
    REQUIRE(queue.configure(kRingPfn, 32));
    RingDriver driver{memory, kRingPfn, 32};
    for (uint16_t i = 0; i < 20; ++i)
        driver.descriptor(i, kData + 0x10 * i, 8, i == 19 ? 0 : kNext, static_cast<uint16_t>(i + 1));
    driver.offer(0);
    REQUIRE(queue.pop());
    const auto lines = log.matching("trace long pop");
    REQUIRE(lines.size() == 1);
    CHECK_THAT(lines[0], Contains("0x2000f0+8 r, +4 more]"));
}

TEST_CASE("virtqueue trace: a suppressed interrupt says why", "[virtqueue][trace]") {
    CapturedLog log;
    SECTION("VRING_AVAIL_F_NO_INTERRUPT") {
        TracedQueue q(true);
        q.driver.set_avail_flags(1);
        q.offer_request(0);
        REQUIRE(q.queue.push(q.queue.pop()->head, 0));
        CHECK_FALSE(q.queue.needs_interrupt());
        CHECK(log.count("trace virtio-test0 q1 irq suppressed NO_INTERRUPT used_idx=1") == 1);
    }
    SECTION("EVENT_IDX: used_event not reached") {
        TracedQueue q(true, 1ULL << split_ring::kFeatureEventIdx);
        q.driver.set_used_event(5);
        q.offer_request(0);
        REQUIRE(q.queue.push(q.queue.pop()->head, 0));
        CHECK_FALSE(q.queue.needs_interrupt());
        CHECK(log.count("trace virtio-test0 q1 irq suppressed used_event=5 used_idx=1") == 1);
    }
    SECTION("an interrupt that is sent is not traced here") {
        TracedQueue q(true);
        q.offer_request(0);
        REQUIRE(q.queue.push(q.queue.pop()->head, 0));
        CHECK(q.queue.needs_interrupt());
        CHECK(log.count("irq") == 0);
    }
}

TEST_CASE("virtqueue: indices seen and the guest's ring fields, for state dumps", "[virtqueue]") {
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    VirtQueue queue(memory, "q");
    CHECK_FALSE(queue.guest_ring_fields());  // not placed yet

    REQUIRE(queue.configure(kRingPfn, 8));
    queue.set_features(1ULL << split_ring::kFeatureEventIdx);
    RingDriver driver{memory, kRingPfn, 8};
    driver.descriptor(0, kData, 4);
    driver.descriptor(1, kData, 4);
    driver.offer(0);
    driver.offer(1);
    driver.set_avail_flags(1);
    driver.set_used_event(7);

    auto fields = queue.guest_ring_fields();
    REQUIRE(fields);
    CHECK(fields->avail_idx == 2);  // what the driver published...
    CHECK(queue.last_seen_avail_index() == 0);  // ...before the device looked
    CHECK(fields->avail_flags == 1);
    CHECK(fields->used_event == 7);

    REQUIRE(queue.pop());  // takes one of the two
    CHECK(queue.last_seen_avail_index() == 2);
    CHECK(queue.next_avail_index() == 1);
    REQUIRE(queue.push(0, 4));
    fields = queue.guest_ring_fields();
    REQUIRE(fields);
    CHECK(fields->used_idx == 1);
    CHECK(fields->used_flags == 0);
    CHECK(fields->avail_event == 1);  // EVENT_IDX: kick me for entry 1

    queue.reset();
    CHECK_FALSE(queue.guest_ring_fields());
    CHECK(queue.last_seen_avail_index() == 0);
}
