// virtio-net under device-side polling (EventLoop's poll phases with
// VirtioNet as the poller): frames the driver did not kick for are sent,
// receive buffers it posted without a kick are filled, and notifications
// come back when the loop goes idle. The test thread is the driver: it
// kicks through eventfds the loop watches (an ioeventfd's path), and only
// when the ring asks for it, as Linux's virtio_ring decides.

#include <catch2/catch.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "net_rig.h"
#include "vmm/core/event_loop.h"

using namespace net_rig;
using namespace std::chrono_literals;

namespace {

// Whether the driver must kick after moving avail idx from old_idx to new_idx.
bool wants_kick(const test_helpers::RingDriver& driver, bool event_idx, uint16_t old_idx, uint16_t new_idx) {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // virtio_mb() before the look
    if (event_idx) return split_ring::need_event(driver.avail_event(), new_idx, old_idx);
    return (driver.used_flags() & split_ring::kUsedNoNotify) == 0;
}

void kick(const UniqueFd& fd) {
    const uint64_t one = 1;
    REQUIRE(::write(fd.get(), &one, sizeof one) == sizeof one);
}

template <typename Done>
bool wait_for(Done done) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!done())
        if (std::chrono::steady_clock::now() > deadline) return false;
    return true;
}

}  // namespace

TEST_CASE("virtio-net polling: frames and buffers the driver did not kick for are served, kicks come back when idle",
          "[net][polling]") {
    const bool event_idx = GENERATE(false, true);
    // 50 ms fixed: every phase outlasts the driver's next step, however busy
    // the machine; 0: no phases, the driver kicks for everything.
    const auto window = GENERATE(std::chrono::nanoseconds(50ms), std::chrono::nanoseconds(0));
    INFO((event_idx ? "EVENT_IDX" : "flags") << ", window " << window.count() << " ns");
    EventLoop loop(window, EventLoop::PollWindow::Fixed);
    Rig rig(kMac | (event_idx ? kEventIdx : 0), true, &loop);
    UniqueFd tx_kick(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    UniqueFd rx_kick(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    const auto watch_kicks = [&](const UniqueFd& fd, void (Rig::*notify)()) {
        loop.watch(fd.get(), EventSources::kReadable, [&rig, &fd, notify](uint32_t) {
            uint64_t count = 0;
            [[maybe_unused]] ssize_t n = ::read(fd.get(), &count, sizeof count);
            (rig.*notify)();
        });
    };
    watch_kicks(tx_kick, &Rig::kick_tx);
    watch_kicks(rx_kick, &Rig::kick_rx);
    // Unwatched before the eventfds and the rig go, on a failed REQUIRE too.
    struct Unwatch {
        EventLoop& loop;
        int tx, rx;
        ~Unwatch() {
            loop.unwatch(tx);
            loop.unwatch(rx);
        }
    } unwatch{loop, tx_kick.get(), rx_kick.get()};

    constexpr int kFrames = 200;
    int tx_kicks = 0;
    for (int i = 0; i < kFrames; ++i) {
        const Bytes frame = concat(Bytes(10, 0), pattern(60, static_cast<uint32_t>(i)));
        const uint16_t old_idx = rig.tx.avail_idx;
        rig.post_tx({frame});
        if (wants_kick(rig.tx, event_idx, old_idx, rig.tx.avail_idx)) {
            kick(tx_kick);
            ++tx_kicks;
        }
        std::optional<Bytes> sent;
        INFO("frame " << i << ", " << tx_kicks << " kicks");
        REQUIRE(wait_for([&] { return (sent = rig.host_receive()).has_value(); }));
        CHECK(*sent == frame);
        // Completed too, as the driver would see before reusing the slot.
        REQUIRE(wait_for([&] { return rig.tx.used_index() == static_cast<uint16_t>(i + 1); }));
    }

    // The receive ring is dry: each frame waits on the tap until the driver
    // posts a buffer for it.
    int rx_kicks = 0;
    for (int i = 0; i < kFrames; ++i) {
        const Bytes frame = concat(Bytes(10, 0), pattern(100, 1000 + static_cast<uint32_t>(i)));
        rig.host_send(frame);
        const uint16_t old_idx = rig.rx.avail_idx;
        const Rig::Posted posted = rig.post_rx({1600});
        if (wants_kick(rig.rx, event_idx, old_idx, rig.rx.avail_idx)) {
            kick(rx_kick);
            ++rx_kicks;
        }
        INFO("received frame " << i << ", " << rx_kicks << " kicks");
        REQUIRE(wait_for([&] { return rig.rx.used_index() == static_cast<uint16_t>(i + 1); }));
        CHECK(rig.guest(posted.addresses[0], frame.size()) == frame);
    }
    CHECK(rig.net->counters().tx_packets == kFrames);
    CHECK(rig.net->counters().rx_packets == kFrames);
    if (window.count() == 0) {
        // Nothing polls: every frame and every buffer needed its kick.
        CHECK(tx_kicks == kFrames);
        CHECK(rx_kicks == kFrames);
        CHECK(loop.poll_stats().phases == 0);
    } else {
        CHECK(tx_kicks < 10);  // the first, and any after a phase ran out
        CHECK(rx_kicks < 10);
        // Idle: the phase ends within the window and the driver is asked to
        // kick again, on both rings.
        const auto kicks_wanted = [&](const test_helpers::RingDriver& driver) {
            return wants_kick(driver, event_idx, driver.avail_idx, static_cast<uint16_t>(driver.avail_idx + 1));
        };
        CHECK(wait_for([&] { return kicks_wanted(rig.tx) && kicks_wanted(rig.rx); }));
    }
}
