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
    loop.watch(event.get(), EventSources::kReadable, [&](uint32_t) {
        uint64_t value = 0;
        [[maybe_unused]] ssize_t n = ::read(event.get(), &value, sizeof(value));
        ++calls;
    });
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
