// Device-side polling (EventLoop's poll phases with VirtioBlk as the
// poller): the hand-over between polling and notifications. The test thread
// is the guest's driver: it keeps requests in flight on a real ring, decides
// whether to kick the way Linux's virtio_ring does, and kicks through an
// eventfd the loop watches (an ioeventfd's path). A request made available
// just as polling ends must still be served: if one is ever stranded, the
// driver waits for it in vain and the test fails on its deadline.

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "recording_signals.h"
#include "ring_driver.h"
#include "temp_file.h"
#include "captured_log.h"
#include "virtio/blk_request.h"
#include "virtio/split_ring.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtqueue.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/unique_fd.h"

using namespace minikvm;
using namespace std::chrono_literals;

namespace {

namespace sr = split_ring;

constexpr uint64_t kRamSize = 16ULL << 20;
constexpr uint32_t kPfn = 0x10;
constexpr uint64_t kSlotArea = 4ULL << 20;  // per slot: header 16, data 512, status 1
constexpr uint64_t kSlotStride = 1024;
constexpr uint64_t kImageSectors = 256;

enum class Kicks { Honoured, Always };

uint32_t stress_scale() {
    const char* text = std::getenv("MINIKVM_POLL_STRESS");
    const long scale = text ? std::strtol(text, nullptr, 10) : 1;
    return scale >= 1 && scale <= 10'000 ? static_cast<uint32_t>(scale) : 1;
}

struct PollRig {
    // A fixed window (EventLoop::PollWindow::Fixed): phases end on the
    // test's clock, not on the machine's load.
    PollRig(std::chrono::nanoseconds window, bool event_idx)
        : loop(window, EventLoop::PollWindow::Fixed), file(std::vector<uint8_t>(kImageSectors * 512, 0x5a)) {
        quiet.emplace(spdlog::level::warn);
        DiskConfig config;
        config.path = file.path();
        blk = std::make_unique<VirtioBlk>("virtio-blk-poll", DiskImage::open(config), config, loop);
        features = event_idx ? 1ULL << sr::kFeatureEventIdx : 0;
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
        ring = memory.span(uint64_t{kPfn} << sr::kLegacyPageShift, layout.end)->data();
        statuses = memory.span(kSlotArea, kSlotStride * (VirtioBlk::kQueueSize / 3))->data();
        loop.watch(kick_fd.get(), EventSources::kReadable, [this](uint32_t) {
            uint64_t count = 0;
            [[maybe_unused]] ssize_t n = ::read(kick_fd.get(), &count, sizeof count);
            std::lock_guard lock(blk->device_lock());
            blk->queue_notified(VirtioBlk::kRequestQueue);
        });
        std::lock_guard lock(blk->device_lock());
        blk->activate(features, queues, signals);
    }
    ~PollRig() {
        loop.unwatch(kick_fd.get());
        std::lock_guard lock(blk->device_lock());
        blk->reset();
    }

    // The guest's view of the ring, as its driver reads and writes it.
    std::atomic_ref<uint16_t> u16(uint64_t offset) const {
        return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(ring + offset));
    }
    uint32_t u32(uint64_t offset) const {
        return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(ring + offset)).load(std::memory_order_relaxed);
    }
    uint16_t used_index() const { return u16(layout.used + sr::kRingIndex).load(std::memory_order_acquire); }

    void offer_slot(uint16_t slot) {
        statuses[slot * kSlotStride + 528] = 0xff;
        const uint16_t old_idx = avail_idx;
        u16(layout.avail + sr::kRingEntries + 2 * (avail_idx % VirtioBlk::kQueueSize))
            .store(static_cast<uint16_t>(3 * slot), std::memory_order_relaxed);
        ++avail_idx;
        u16(layout.avail + sr::kRingIndex).store(avail_idx, std::memory_order_release);
        ++offered;
        // The index store before the flag/avail_event load (virtio_ring's
        // virtio_mb() in virtqueue_kick_prepare).
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (kicks == Kicks::Always || wants_kick(old_idx, avail_idx)) {
            const uint64_t one = 1;
            [[maybe_unused]] ssize_t n = ::write(kick_fd.get(), &one, sizeof one);
            ++kicked;
        }
    }
    bool wants_kick(uint16_t old_idx, uint16_t new_idx) const {
        if (features & (1ULL << sr::kFeatureEventIdx)) {
            const uint16_t event =
                u16(layout.used + sr::used_avail_event_offset(VirtioBlk::kQueueSize)).load(std::memory_order_relaxed);
            return sr::need_event(event, new_idx, old_idx);
        }
        return (u16(layout.used + sr::kRingFlags).load(std::memory_order_relaxed) & sr::kUsedNoNotify) == 0;
    }

    // Keeps `depth` requests in flight until `total` have completed, with a
    // random pause (0 to `max_gap`) before each new request. False, with
    // `why` set, if a completion is wrong or none came for `deadline`.
    bool run(uint32_t total, uint16_t depth, std::chrono::nanoseconds max_gap, uint32_t seed) {
        std::mt19937 random(seed);
        std::uniform_int_distribution<int64_t> gap(0, max_gap.count());
        uint16_t used_seen = used_index();
        for (uint16_t slot = 0; slot < depth; ++slot) offer_slot(slot);
        uint32_t done = 0;
        auto last_progress = std::chrono::steady_clock::now();
        while (done < total) {
            const uint16_t used = used_index();
            if (used == used_seen) {
                if (std::chrono::steady_clock::now() - last_progress > deadline) {
                    why = fmt::format("nothing completed for {} ms: {} of {} done, avail idx {}, used idx {}, "
                                      "device took {}, {} in flight, used flags {}, avail_event {}, {} kicks",
                                      deadline.count(), done, total, avail_idx, used, queues[0].next_avail_index(),
                                      queues[0].in_flight(), u16(layout.used).load(),
                                      u16(layout.used + sr::used_avail_event_offset(VirtioBlk::kQueueSize)).load(),
                                      kicked);
                    return false;
                }
                continue;
            }
            while (used_seen != used) {
                const uint64_t element = layout.used + sr::kRingEntries + 8 * (used_seen % VirtioBlk::kQueueSize);
                const uint32_t id = u32(element), length = u32(element + 4);
                ++used_seen;
                const auto slot = static_cast<uint16_t>(id / 3);
                if (id % 3 != 0 || slot >= depth || length != 513 || statuses[slot * kSlotStride + 528] != 0) {
                    why = fmt::format("bad completion: head {} length {}", id, length);
                    return false;
                }
                ++done;
                if (done + depth > total) continue;  // the last ones drain
                const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(gap(random));
                while (std::chrono::steady_clock::now() < until) {
                }
                offer_slot(slot);
            }
            last_progress = std::chrono::steady_clock::now();
        }
        return true;
    }

    std::optional<test_helpers::CapturedLog> quiet;
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    EventLoop loop;
    TempFile file;
    uint64_t features = 0;
    std::vector<VirtQueue> queues;
    test_helpers::RecordingSignals signals;
    std::unique_ptr<VirtioBlk> blk;
    test_helpers::RingDriver driver{memory, kPfn, VirtioBlk::kQueueSize};
    sr::LegacyLayout layout = sr::legacy_layout(VirtioBlk::kQueueSize);
    uint8_t* ring = nullptr;
    uint8_t* statuses = nullptr;
    UniqueFd kick_fd{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    Kicks kicks = Kicks::Honoured;
    uint16_t avail_idx = 0;
    uint64_t offered = 0;
    uint64_t kicked = 0;
    std::string why;
    std::chrono::milliseconds deadline{5000};
};

}  // namespace

TEST_CASE("blk polling: no request is stranded at the hand-over, depth 1 and 32, flags and EVENT_IDX",
          "[virtio-blk][polling]") {
    const bool event_idx = GENERATE(false, true);
    const uint16_t depth = GENERATE(uint16_t{1}, uint16_t{32});
    CAPTURE(event_idx, depth);
    // A 20 us window and gaps up to 60 us: many requests land just before,
    // at and after the switch back to notifications.
    PollRig rig(20us, event_idx);
    // MINIKVM_POLL_STRESS=N runs N times as many (a long stress by hand).
    const uint32_t total = (depth == 1 ? 10'000 : 40'000) * stress_scale();
    const bool ran = rig.run(total, depth, 60us, 1 + depth + (event_idx ? 100 : 0));
    INFO(rig.why);
    REQUIRE(ran);
    CHECK(rig.signals.broken_count() == 0);
    const EventLoop::PollStats stats = rig.loop.poll_stats();
    CHECK(stats.phases > 0);
    CHECK(stats.caught > 0);
    // Polling spared kicks: the driver was told not to notify for many.
    CHECK(rig.kicked < rig.offered);
}

TEST_CASE("blk polling: a driver that ignores NO_NOTIFY and kicks anyway is served", "[virtio-blk][polling]") {
    const bool event_idx = GENERATE(false, true);
    PollRig rig(50us, event_idx);
    rig.kicks = Kicks::Always;
    const bool ran = rig.run(10'000, 8, 20us, 11);
    INFO(rig.why);
    REQUIRE(ran);
    CHECK(rig.kicked == rig.offered);
    CHECK(rig.signals.broken_count() == 0);
}

TEST_CASE("blk polling: off (window 0) the driver kicks for every request it has to", "[virtio-blk][polling]") {
    PollRig rig(0ns, false);
    const bool ran = rig.run(5'000, 1, 0ns, 3);
    INFO(rig.why);
    REQUIRE(ran);
    CHECK(rig.loop.poll_stats().phases == 0);
    // At depth 1 without EVENT_IDX every request finds the queue idle.
    CHECK(rig.kicked == rig.offered);
}

TEST_CASE("blk polling: a reset while the loop polls, then the device works again", "[virtio-blk][polling]") {
    PollRig rig(1ms, true);
    bool ran = rig.run(20'000, 16, 5us, 5);
    INFO(rig.why);
    REQUIRE(ran);
    for (int round = 0; round < 20; ++round) {
        {
            // What the transport does for a reset and the driver's set-up
            // after it, with the loop polling all along: fresh rings (the
            // descriptors stay as they are), the queue configured again.
            std::lock_guard lock(rig.blk->device_lock());
            rig.blk->reset();
            rig.queues[0].reset();
            REQUIRE(rig.memory.write((uint64_t{kPfn} << sr::kLegacyPageShift) + rig.layout.avail,
                                     std::vector<uint8_t>(rig.layout.end - rig.layout.avail, 0)));
            REQUIRE(rig.queues[0].configure(kPfn, VirtioBlk::kQueueSize));
            rig.blk->activate(rig.features, rig.queues, rig.signals);
        }
        rig.avail_idx = 0;
        ran = rig.run(2'000, 16, 5us, 50 + round);
        INFO(rig.why);
        REQUIRE(ran);
    }
    CHECK(rig.signals.broken_count() == 0);
}
