// Device-side polling with Virtio9p as the poller: the hand-over between
// polling and notifications (PolledRingDriver, on a real ring), with the
// requests answered by a real server on a temporary directory through the
// device's worker threads.

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "captured_log.h"
#include "p9_client.h"
#include "polled_ring_driver.h"
#include "recording_signals.h"
#include "ring_driver.h"
#include "virtio/split_ring.h"
#include "virtio/virtio_9p.h"
#include "virtio/virtqueue.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/guest_memory.h"

using namespace minikvm;
using namespace test_helpers;
using namespace std::chrono_literals;

namespace {

namespace sr = split_ring;

constexpr uint64_t kRamSize = 16ULL << 20;
constexpr uint32_t kPfn = 0x10;
constexpr uint64_t kSlotArea = 4ULL << 20;  // per slot: request 4 KiB, then reply room 4 KiB
constexpr uint64_t kSlotStride = 8192;
constexpr uint32_t kRoom = 4096;
constexpr uint16_t kSlots = 32;

struct P9PollRig {
    // A fixed window: phases end on the test's clock, not on the load.
    P9PollRig(std::chrono::nanoseconds window, bool event_idx)
        : loop(window, EventLoop::PollWindow::Fixed), features(event_idx ? 1ULL << sr::kFeatureEventIdx : 0) {
        quiet.emplace(spdlog::level::warn);
        device = std::make_unique<Virtio9p>(
            "virtio-9p-poll", "polltag",
            std::make_unique<p9::Server>(p9::SharedTree::open(dir.path), p9::ServerOptions{}, "p9"), loop);
        queues.emplace_back(memory, "requestq");
        queues[0].set_features(features);
        REQUIRE(queues[0].configure(kPfn, Virtio9p::kQueueSize));
        for (uint16_t slot = 0; slot < kSlots; ++slot) {
            const auto head = static_cast<uint16_t>(2 * slot);
            driver.descriptor(head, request_address(slot), 0, sr::kDescNext, static_cast<uint16_t>(head + 1));
            driver.descriptor(head + 1, request_address(slot) + kRoom, kRoom, sr::kDescWrite, 0);
        }
        loop.watch(guest.kick_fd.get(), EventSources::kReadable, [this](uint32_t) {
            uint64_t count = 0;
            [[maybe_unused]] ssize_t n = ::read(guest.kick_fd.get(), &count, sizeof count);
            std::lock_guard lock(device->device_lock());
            device->queue_notified(Virtio9p::kRequestQueue);
        });
        {
            std::lock_guard lock(device->device_lock());
            device->activate(features, queues, signals);
        }
        start_session();
    }
    ~P9PollRig() {
        loop.unwatch(guest.kick_fd.get());
        std::lock_guard lock(device->device_lock());
        device->reset();
    }

    static uint64_t request_address(uint16_t slot) { return kSlotArea + slot * kSlotStride; }

    // Puts `message` in `slot`'s request buffer (its descriptor's length too).
    void set_request(uint16_t slot, const std::vector<uint8_t>& message) {
        REQUIRE(message.size() <= kRoom);
        REQUIRE(memory.write(request_address(slot), message));
        driver.descriptor(2 * slot, request_address(slot), static_cast<uint32_t>(message.size()), sr::kDescNext,
                          static_cast<uint16_t>(2 * slot + 1));
    }
    P9Reply reply(uint16_t slot, uint32_t length) const {
        std::vector<uint8_t> bytes(std::min(length, kRoom));
        REQUIRE(memory.read(request_address(slot) + kRoom, bytes));
        return P9Reply{bytes};
    }

    // Runs `total` requests, `depth` at a time: slot s sends its request
    // (set_request) again and again, and each reply must be of type `expected`.
    bool run(uint32_t total, uint16_t depth, std::chrono::nanoseconds max_gap, uint32_t seed, p9::Type expected) {
        const bool ran = guest.run(
            total, depth, max_gap, seed,
            {.head = [](uint16_t slot) { return static_cast<uint16_t>(2 * slot); },
             .check = [this, expected](uint16_t slot, uint32_t length) {
                 const P9Reply answer = reply(slot, length);
                 if (length < p9::kHeaderSize || answer.type() != expected || answer.tag() != slot) {
                     return fmt::format("expected type {} with tag {}", static_cast<int>(expected), slot);
                 }
                 return std::string();
             }});
        if (!ran) {
            guest.why += fmt::format("; the device took {}, {} in flight", queues[0].next_avail_index(),
                                     queues[0].in_flight());
        }
        return ran;
    }

    // Tversion, then Tattach of fid 0, through the ring like everything else.
    void start_session() {
        set_request(0, P9Message(p9::Type::Tversion, 0).u32(64 << 10).str("9P2000.L").bytes());
        REQUIRE(run(1, 1, 0ns, 0, p9::Type::Rversion));
        set_request(0, P9Message(p9::Type::Tattach, 0).u32(0).u32(p9::kNoFid).str("").str("").u32(0).bytes());
        REQUIRE(run(1, 1, 0ns, 0, p9::Type::Rattach));
    }
    // Every slot asks for the root's attributes, under its own tag.
    void getattr_in_every_slot() {
        for (uint16_t slot = 0; slot < kSlots; ++slot) {
            set_request(slot, P9Message(p9::Type::Tgetattr, slot).u32(0).u64(0x7ff).bytes());
        }
    }

    std::optional<CapturedLog> quiet;
    TempDirectory dir;
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    EventLoop loop;
    const uint64_t features;
    std::vector<VirtQueue> queues;
    RecordingSignals signals;
    std::unique_ptr<Virtio9p> device;
    RingDriver driver{memory, kPfn, Virtio9p::kQueueSize};
    PolledRingDriver guest{memory, kPfn, Virtio9p::kQueueSize, features};
};

}  // namespace

TEST_CASE("9p polling: no request is stranded at the hand-over, depth 1 and 8, flags and EVENT_IDX",
          "[virtio-9p][polling]") {
    const bool event_idx = GENERATE(false, true);
    const uint16_t depth = GENERATE(uint16_t{1}, uint16_t{8});
    CAPTURE(event_idx, depth);
    // A 20 us window and gaps up to 60 us: requests land just before, at
    // and after the switch back to notifications.
    P9PollRig rig(20us, event_idx);
    rig.getattr_in_every_slot();
    const uint32_t total = (depth == 1 ? 5'000 : 20'000) * poll_stress_scale();
    const bool ran = rig.run(total, depth, 60us, 7 + depth + (event_idx ? 100 : 0), p9::Type::Rgetattr);
    INFO(rig.guest.why);
    REQUIRE(ran);
    CHECK(rig.signals.broken_count() == 0);
    const EventLoop::PollStats stats = rig.loop.poll_stats();
    CHECK(stats.phases > 0);
    CHECK(stats.caught > 0);
    // Polling spared kicks: the driver was told not to notify for many.
    CHECK(rig.guest.kicked < rig.guest.offered);
}

TEST_CASE("9p polling: a driver that ignores NO_NOTIFY and kicks anyway is served", "[virtio-9p][polling]") {
    const bool event_idx = GENERATE(false, true);
    P9PollRig rig(50us, event_idx);
    rig.guest.kicks = PolledRingDriver::Kicks::Always;
    rig.guest.offered = rig.guest.kicked = 0;  // the session's requests were not
    rig.getattr_in_every_slot();
    const bool ran = rig.run(5'000, 8, 20us, 11, p9::Type::Rgetattr);
    INFO(rig.guest.why);
    REQUIRE(ran);
    CHECK(rig.guest.kicked == rig.guest.offered);
    CHECK(rig.signals.broken_count() == 0);
}

TEST_CASE("9p polling: off (window 0) the driver kicks for every request it has to", "[virtio-9p][polling]") {
    P9PollRig rig(0ns, false);
    rig.guest.offered = rig.guest.kicked = 0;
    rig.getattr_in_every_slot();
    const bool ran = rig.run(2'000, 1, 0ns, 3, p9::Type::Rgetattr);
    INFO(rig.guest.why);
    REQUIRE(ran);
    CHECK(rig.loop.poll_stats().phases == 0);
    // At depth 1 without EVENT_IDX every request finds the queue idle.
    CHECK(rig.guest.kicked == rig.guest.offered);
}

TEST_CASE("9p polling: a reset while the loop polls, then a new session works", "[virtio-9p][polling]") {
    P9PollRig rig(1ms, true);
    rig.getattr_in_every_slot();
    bool ran = rig.run(5'000, 16, 5us, 5, p9::Type::Rgetattr);
    INFO(rig.guest.why);
    REQUIRE(ran);
    for (int round = 0; round < 10; ++round) {
        rig.guest.reset_and_restart(*rig.device, rig.queues, rig.memory, kPfn, rig.features, rig.signals);
        // The reset forgot fid 0: a new session, then the load again.
        rig.start_session();
        rig.getattr_in_every_slot();
        ran = rig.run(1'000, 16, 5us, 50 + round, p9::Type::Rgetattr);
        INFO(rig.guest.why);
        REQUIRE(ran);
    }
    CHECK(rig.signals.broken_count() == 0);
}
