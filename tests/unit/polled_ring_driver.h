#pragma once
// The driver's half of a device-side polling test: the test thread keeps
// requests in flight on a real legacy ring, decides whether to kick the way
// Linux's virtio_ring does (VRING_USED_F_NO_NOTIFY, or avail_event with
// EVENT_IDX), and kicks through an eventfd that the device's EventLoop
// watches (an ioeventfd's path). A request made available just as polling
// ends must still be served: if one is ever stranded, the driver waits for
// it in vain and run() fails on its deadline.
//
// The ring is read and written through atomic_ref, as the device's thread
// uses it at the same time.

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "virtio/split_ring.h"
#include "virtio/virtio_device.h"
#include "virtio/virtqueue.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/unique_fd.h"

namespace test_helpers {

// MINIKVM_POLL_STRESS=N makes the hand-over tests run N times as many
// requests (a long stress by hand).
inline uint32_t poll_stress_scale() {
    const char* text = std::getenv("MINIKVM_POLL_STRESS");
    const long scale = text ? std::strtol(text, nullptr, 10) : 1;
    return scale >= 1 && scale <= 10'000 ? static_cast<uint32_t>(scale) : 1;
}

struct PolledRingDriver {
    enum class Kicks { Honoured, Always };

    // What run() needs from the test: the head of slot `slot`'s chain, a
    // check of one completion (an empty string when it is right), and the
    // slot made ready again before it is offered.
    struct Slots {
        std::function<uint16_t(uint16_t slot)> head;
        std::function<std::string(uint16_t slot, uint32_t length)> check;
        std::function<void(uint16_t slot)> prepare = [](uint16_t) {};
    };

    PolledRingDriver(const minikvm::GuestMemory& memory, uint32_t pfn, uint16_t size, uint64_t features)
        : size(size),
          event_idx((features & (uint64_t{1} << minikvm::split_ring::kFeatureEventIdx)) != 0),
          layout(minikvm::split_ring::legacy_layout(size)) {
        ring = memory.span(uint64_t{pfn} << minikvm::split_ring::kLegacyPageShift, layout.end)->data();
    }

    std::atomic_ref<uint16_t> u16(uint64_t offset) const {
        return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(ring + offset));
    }
    uint32_t u32(uint64_t offset) const {
        return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(ring + offset)).load(std::memory_order_relaxed);
    }
    uint16_t used_index() const {
        return u16(layout.used + minikvm::split_ring::kRingIndex).load(std::memory_order_acquire);
    }
    uint16_t avail_event() const {
        return u16(layout.used + minikvm::split_ring::used_avail_event_offset(size)).load(std::memory_order_relaxed);
    }
    uint16_t used_flags() const {
        return u16(layout.used + minikvm::split_ring::kRingFlags).load(std::memory_order_relaxed);
    }

    bool wants_kick(uint16_t old_idx, uint16_t new_idx) const {
        if (event_idx) return minikvm::split_ring::need_event(avail_event(), new_idx, old_idx);
        return (used_flags() & minikvm::split_ring::kUsedNoNotify) == 0;
    }

    void offer(uint16_t head) {
        namespace sr = minikvm::split_ring;
        const uint16_t old_idx = avail_idx;
        u16(layout.avail + sr::kRingEntries + 2 * (avail_idx % size)).store(head, std::memory_order_relaxed);
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

    // Keeps `depth` slots in flight until `total` requests have completed,
    // with a random pause (0 to `max_gap`) before each new request. False,
    // with `why` set, if a completion is wrong or none came for `deadline`.
    bool run(uint32_t total, uint16_t depth, std::chrono::nanoseconds max_gap, uint32_t seed, const Slots& slots) {
        namespace sr = minikvm::split_ring;
        std::mt19937 random(seed);
        std::uniform_int_distribution<int64_t> gap(0, max_gap.count());
        std::unordered_map<uint16_t, uint16_t> slot_of;
        for (uint16_t slot = 0; slot < depth; ++slot) slot_of[slots.head(slot)] = slot;
        uint16_t used_seen = used_index();
        for (uint16_t slot = 0; slot < depth; ++slot) {
            slots.prepare(slot);
            offer(slots.head(slot));
        }
        uint32_t done = 0;
        auto last_progress = std::chrono::steady_clock::now();
        while (done < total) {
            const uint16_t used = used_index();
            if (used == used_seen) {
                if (std::chrono::steady_clock::now() - last_progress > deadline) {
                    why = fmt::format("nothing completed for {} ms: {} of {} done, avail idx {}, used idx {}, "
                                      "used flags {}, avail_event {}, {} kicks",
                                      deadline.count(), done, total, avail_idx, used, used_flags(), avail_event(),
                                      kicked);
                    return false;
                }
                continue;
            }
            while (used_seen != used) {
                const uint64_t element = layout.used + sr::kRingEntries + 8 * (used_seen % size);
                const uint32_t id = u32(element), length = u32(element + 4);
                ++used_seen;
                const auto found = slot_of.find(static_cast<uint16_t>(id));
                if (id > UINT16_MAX || found == slot_of.end()) {
                    why = fmt::format("completion of head {}, not one in flight", id);
                    return false;
                }
                const uint16_t slot = found->second;
                if (std::string wrong = slots.check(slot, length); !wrong.empty()) {
                    why = fmt::format("bad completion of head {} (length {}): {}", id, length, wrong);
                    return false;
                }
                ++done;
                if (done + depth > total) continue;  // the last ones drain
                const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(gap(random));
                while (std::chrono::steady_clock::now() < until) {
                }
                slots.prepare(slot);
                offer(slots.head(slot));
            }
            last_progress = std::chrono::steady_clock::now();
        }
        return true;
    }

    // What the transport does for a reset of `device` and the driver's
    // set-up after it, while the device's loop may be polling: fresh rings
    // (the descriptors stay as they are), the queue configured again.
    template <typename Device>
    void reset_and_restart(Device& device, std::vector<minikvm::VirtQueue>& queues,
                           const minikvm::GuestMemory& memory, uint32_t pfn, uint64_t features,
                           minikvm::VirtioTransportSignals& signals) {
        {
            std::lock_guard lock(device.device_lock());
            device.reset();
            queues[0].reset();
            REQUIRE(memory.write((uint64_t{pfn} << minikvm::split_ring::kLegacyPageShift) + layout.avail,
                                 std::vector<uint8_t>(layout.end - layout.avail, 0)));
            REQUIRE(queues[0].configure(pfn, size));
            device.activate(features, queues, signals);
        }
        avail_idx = 0;
    }

    const uint16_t size;
    const bool event_idx;
    const minikvm::split_ring::LegacyLayout layout;
    uint8_t* ring = nullptr;
    minikvm::UniqueFd kick_fd{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    Kicks kicks = Kicks::Honoured;
    uint16_t avail_idx = 0;
    uint64_t offered = 0;
    uint64_t kicked = 0;
    std::string why;
    std::chrono::milliseconds deadline{5000};
};

}  // namespace test_helpers
