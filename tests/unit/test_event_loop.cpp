#include <catch2/catch.hpp>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "vmm/core/event_loop.h"
#include "vmm/core/unique_fd.h"

using namespace minikvm;

namespace {
bool wait_until(const std::function<bool()>& condition) {
    for (int i = 0; i < 500; ++i) {
        if (condition()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return condition();
}
// Watches eventfd `fd`: each wake drains it and counts one call.
void watch_counting(EventLoop& loop, int fd, std::atomic<int>& calls) {
    loop.watch(fd, EventSources::kReadable, [fd, &calls](uint32_t) {
        uint64_t value = 0;
        [[maybe_unused]] ssize_t n = ::read(fd, &value, sizeof(value));
        ++calls;
    });
}
void signal(int fd) {
    uint64_t one = 1;
    REQUIRE(::write(fd, &one, sizeof(one)) == sizeof(one));
}
}  // namespace

TEST_CASE("event loop runs the handler of a readable fd on its thread") {
    EventLoop loop;
    UniqueFd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    std::atomic<int> calls{0};
    std::atomic<bool> other_thread{false};
    const auto test_thread = std::this_thread::get_id();
    loop.watch(event.get(), EventSources::kReadable, [&](uint32_t) {
        uint64_t value = 0;
        [[maybe_unused]] ssize_t n = ::read(event.get(), &value, sizeof(value));
        other_thread = std::this_thread::get_id() != test_thread;
        calls += static_cast<int>(value);
    });
    signal(event.get());
    REQUIRE(wait_until([&] { return calls == 1; }));
    CHECK(other_thread);
    signal(event.get());
    signal(event.get());
    REQUIRE(wait_until([&] { return calls == 3; }));
}

TEST_CASE("after unwatch() the handler never runs again") {
    EventLoop loop;
    UniqueFd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    std::atomic<int> calls{0};
    watch_counting(loop, event.get(), calls);
    signal(event.get());
    REQUIRE(wait_until([&] { return calls == 1; }));
    loop.unwatch(event.get());
    signal(event.get());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(calls == 1);
}

TEST_CASE("an event loop with nothing registered stops cleanly") {
    EventLoop loop;
    SUCCEED();
}

namespace {
// A poller that records its calls; `work` is taken one unit per poll().
struct CountingPoller : Poller {
    std::atomic<int> begins{0}, polls{0}, ends{0};
    std::atomic<int> work{0};
    std::atomic<bool> polling{false};
    std::atomic<bool> unbalanced{false};
    void begin_polling() override {
        if (polling.exchange(true)) unbalanced = true;
        ++begins;
    }
    bool poll() override {
        if (!polling) unbalanced = true;
        ++polls;
        if (work.load() == 0) return false;
        --work;
        return true;
    }
    bool end_polling() override {
        if (!polling.exchange(false)) unbalanced = true;
        ++ends;
        return false;
    }
};
}  // namespace

TEST_CASE("event loop: without a poll window pollers are never called") {
    EventLoop loop;
    CountingPoller poller;
    loop.add_poller(poller);
    UniqueFd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    std::atomic<int> calls{0};
    watch_counting(loop, event.get(), calls);
    for (int i = 0; i < 5; ++i) {
        signal(event.get());
        REQUIRE(wait_until([&] { return calls == i + 1; }));
    }
    CHECK(poller.begins + poller.polls + poller.ends == 0);
    CHECK(loop.poll_stats().phases == 0);
    loop.unwatch(event.get());
    loop.remove_poller(poller);
}

TEST_CASE("event loop: the poll window grows under frequent wakes, shrinks to 0 when idle, and every phase ends",
          "[polling]") {
    const auto cap = std::chrono::milliseconds(20);
    EventLoop loop(cap);
    CountingPoller poller;
    loop.add_poller(poller);
    UniqueFd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    std::atomic<int> calls{0};
    watch_counting(loop, event.get(), calls);
    // Wakes every ~100 us, well inside the cap: the window grows until a
    // phase spans the gap (10, 20, ... 160 us).
    for (int i = 0; i < 200; ++i) {
        signal(event.get());
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    REQUIRE(wait_until([&] { return calls > 0 && !poller.polling; }));
    const EventLoop::PollStats busy = loop.poll_stats();
    CHECK(busy.max_window_ns == 20'000'000);
    CHECK(busy.window_ns >= 20'000);
    CHECK(busy.phases > 0);
    // Work handed to the poller is found without any fd.
    poller.work = 1000;
    signal(event.get());
    REQUIRE(wait_until([&] { return poller.work == 0; }));
    // Wakes 50 ms apart, far past the cap: the window halves down to 0.
    for (int i = 0; i < 16; ++i) {
        signal(event.get());
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(loop.poll_stats().window_ns == 0);
    REQUIRE(wait_until([&] { return !poller.polling; }));
    CHECK(poller.begins == poller.ends);
    CHECK_FALSE(poller.unbalanced);
    loop.remove_poller(poller);
    const int polls = poller.polls;
    for (int i = 0; i < 20; ++i) {
        signal(event.get());
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(poller.polls == polls);  // removed: never called again
    loop.unwatch(event.get());
}
