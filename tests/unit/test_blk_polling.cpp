// Device-side polling (EventLoop's poll phases with VirtioBlk as the
// poller): the hand-over between polling and notifications, driven by
// PolledRingDriver (see there) on a real ring.

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "captured_log.h"
#include "polled_ring_driver.h"
#include "recording_signals.h"
#include "ring_driver.h"
#include "temp_file.h"
#include "virtio/blk_request.h"
#include "virtio/split_ring.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtqueue.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/guest_memory.h"

using namespace minikvm;
using namespace std::chrono_literals;

namespace {

namespace sr = split_ring;

constexpr uint64_t kRamSize = 16ULL << 20;
constexpr uint32_t kPfn = 0x10;
constexpr uint64_t kSlotArea = 4ULL << 20;  // per slot: header 16, data 512, status 1
constexpr uint64_t kSlotStride = 1024;
constexpr uint64_t kImageSectors = 256;

struct PollRig {
    // A fixed window (EventLoop::PollWindow::Fixed): phases end on the
    // test's clock, not on the machine's load.
    PollRig(std::chrono::nanoseconds window, bool event_idx, DiskAio aio = DiskAio::IoUring)
        : loop(window, EventLoop::PollWindow::Fixed),
          file(std::vector<uint8_t>(kImageSectors * 512, 0x5a)),
          features(event_idx ? 1ULL << sr::kFeatureEventIdx : 0) {
        quiet.emplace(spdlog::level::warn);
        DiskConfig config;
        config.path = file.path();
        config.aio = aio;
        blk = std::make_unique<VirtioBlk>("virtio-blk-poll", DiskImage::open(config), config, loop);
        queues.emplace_back(memory, "requestq");
        queues[0].set_features(features);
        REQUIRE(queues[0].configure(kPfn, VirtioBlk::kQueueSize));
        // Every slot's chain is fixed: header, 512-byte buffer, status.
        for (uint16_t slot = 0; slot < VirtioBlk::kQueueSize / 3; ++slot) {
            const uint64_t base = kSlotArea + slot * kSlotStride;
            const auto head = static_cast<uint16_t>(3 * slot);
            test_helpers::put_le(memory, base, blk::kTypeIn, 4);
            test_helpers::put_le(memory, base + 8, slot % kImageSectors, 8);
            driver.descriptor(head, base, 16, sr::kDescNext, static_cast<uint16_t>(head + 1));
            driver.descriptor(head + 1, base + 16, 512, sr::kDescWrite | sr::kDescNext,
                              static_cast<uint16_t>(head + 2));
            driver.descriptor(head + 2, base + 528, 1, sr::kDescWrite, 0);
        }
        statuses = memory.span(kSlotArea, kSlotStride * (VirtioBlk::kQueueSize / 3))->data();
        loop.watch(guest.kick_fd.get(), EventSources::kReadable, [this](uint32_t) {
            uint64_t count = 0;
            [[maybe_unused]] ssize_t n = ::read(guest.kick_fd.get(), &count, sizeof count);
            std::lock_guard lock(blk->device_lock());
            blk->queue_notified(VirtioBlk::kRequestQueue);
        });
        std::lock_guard lock(blk->device_lock());
        blk->activate(features, queues, signals);
    }
    ~PollRig() {
        loop.unwatch(guest.kick_fd.get());
        std::lock_guard lock(blk->device_lock());
        blk->reset();
    }

    // Every slot reads its sector into its buffer: 513 bytes written, status 0.
    bool run(uint32_t total, uint16_t depth, std::chrono::nanoseconds max_gap, uint32_t seed) {
        const bool ran = guest.run(total, depth, max_gap, seed,
                         {.head = [](uint16_t slot) { return static_cast<uint16_t>(3 * slot); },
                          .check =
                              [this](uint16_t slot, uint32_t length) {
                                  const uint8_t status = statuses[slot * kSlotStride + 528];
                                  return length == 513 && status == 0
                                             ? std::string()
                                             : fmt::format("expected 513 bytes and status 0, status {}", status);
                              },
                          .prepare = [this](uint16_t slot) { statuses[slot * kSlotStride + 528] = 0xff; }});
        if (!ran) {
            guest.why += fmt::format("; the device took {}, {} in flight", queues[0].next_avail_index(),
                                     queues[0].in_flight());
        }
        return ran;
    }

    std::optional<test_helpers::CapturedLog> quiet;
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    EventLoop loop;
    TempFile file;
    const uint64_t features;
    std::vector<VirtQueue> queues;
    test_helpers::RecordingSignals signals;
    std::unique_ptr<VirtioBlk> blk;
    test_helpers::RingDriver driver{memory, kPfn, VirtioBlk::kQueueSize};
    test_helpers::PolledRingDriver guest{memory, kPfn, VirtioBlk::kQueueSize, features};
    uint8_t* statuses = nullptr;
};

}  // namespace

TEST_CASE("blk polling: no request is stranded at the hand-over, depth 1 and 32, flags and EVENT_IDX",
          "[virtio-blk][polling]") {
    const bool event_idx = GENERATE(false, true);
    const uint16_t depth = GENERATE(uint16_t{1}, uint16_t{32});
    // Both engines: their completion signals are off while the loop polls,
    // and a request that finishes at the switch must not be stranded either.
    const DiskAio aio = GENERATE(DiskAio::IoUring, DiskAio::Threads);
    CAPTURE(event_idx, depth, aio == DiskAio::IoUring ? "io_uring" : "threads");
    // A 20 us window and gaps up to 60 us: many requests land just before,
    // at and after the switch back to notifications.
    PollRig rig(20us, event_idx, aio);
    // MINIKVM_POLL_STRESS=N runs N times as many (a long stress by hand).
    const uint32_t total = (depth == 1 ? 10'000 : 40'000) * test_helpers::poll_stress_scale();
    const bool ran = rig.run(total, depth, 60us, 1 + depth + (event_idx ? 100 : 0));
    INFO(rig.guest.why);
    REQUIRE(ran);
    CHECK(rig.signals.broken_count() == 0);
    const EventLoop::PollStats stats = rig.loop.poll_stats();
    CHECK(stats.phases > 0);
    CHECK(stats.caught > 0);
    // Polling spared kicks: the driver was told not to notify for many.
    CHECK(rig.guest.kicked < rig.guest.offered);
}

TEST_CASE("blk polling: a driver that ignores NO_NOTIFY and kicks anyway is served", "[virtio-blk][polling]") {
    const bool event_idx = GENERATE(false, true);
    PollRig rig(50us, event_idx);
    rig.guest.kicks = test_helpers::PolledRingDriver::Kicks::Always;
    const bool ran = rig.run(10'000, 8, 20us, 11);
    INFO(rig.guest.why);
    REQUIRE(ran);
    CHECK(rig.guest.kicked == rig.guest.offered);
    CHECK(rig.signals.broken_count() == 0);
}

TEST_CASE("blk polling: off (window 0) the driver kicks for every request it has to", "[virtio-blk][polling]") {
    PollRig rig(0ns, false);
    const bool ran = rig.run(5'000, 1, 0ns, 3);
    INFO(rig.guest.why);
    REQUIRE(ran);
    CHECK(rig.loop.poll_stats().phases == 0);
    // At depth 1 without EVENT_IDX every request finds the queue idle.
    CHECK(rig.guest.kicked == rig.guest.offered);
}

TEST_CASE("blk polling: a reset while the loop polls, then the device works again", "[virtio-blk][polling]") {
    PollRig rig(1ms, true);
    bool ran = rig.run(20'000, 16, 5us, 5);
    INFO(rig.guest.why);
    REQUIRE(ran);
    for (int round = 0; round < 20; ++round) {
        rig.guest.reset_and_restart(*rig.blk, rig.queues, rig.memory, kPfn, rig.features, rig.signals);
        ran = rig.run(2'000, 16, 5us, 50 + round);
        INFO(rig.guest.why);
        REQUIRE(ran);
    }
    CHECK(rig.signals.broken_count() == 0);
}
