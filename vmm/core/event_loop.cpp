#include "vmm/core/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <system_error>
#include <thread>

namespace minikvm {

namespace {

uint32_t epoll_events(uint32_t interest) {
    return ((interest & EventSources::kReadable) != 0 ? EPOLLIN : 0u) |
           ((interest & EventSources::kWritable) != 0 ? EPOLLOUT : 0u);
}

uint32_t ready_bits(uint32_t events) {
    return ((events & EPOLLIN) != 0 ? EventSources::kReadable : 0u) |
           ((events & EPOLLOUT) != 0 ? EventSources::kWritable : 0u) |
           ((events & (EPOLLERR | EPOLLHUP)) != 0 ? EventSources::kError : 0u);
}

}  // namespace

EventLoop::EventLoop(std::chrono::nanoseconds max_poll_window, PollWindow mode)
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      max_window_(std::max(max_poll_window, std::chrono::nanoseconds{0})),
      mode_(mode) {
    if (mode_ == PollWindow::Fixed) {
        window_ = max_window_;
        window_ns_.store(static_cast<uint64_t>(window_.count()), std::memory_order_relaxed);
    }
    if (!epoll_ || !wake_) throw std::system_error(errno, std::generic_category(), "event loop");
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = wake_.get();
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &event) < 0)
        throw std::system_error(errno, std::generic_category(), "epoll_ctl");
    thread_ = std::thread([this] { run(); });
}

EventLoop::~EventLoop() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
    thread_.join();
}

void EventLoop::watch(int fd, uint32_t interest, Handler handler) {
    std::lock_guard lock(mutex_);
    {
        std::lock_guard interest_lock(interest_mutex_);
        apply_interest(fd, interest);
    }
    handlers_[fd] = std::move(handler);
}

void EventLoop::set_interest(int fd, uint32_t interest) {
    std::lock_guard lock(interest_mutex_);
    apply_interest(fd, interest);
}

void EventLoop::apply_interest(int fd, uint32_t interest) {
    const auto found = interest_.find(fd);
    const bool registered = found != interest_.end();
    if (registered && found->second == interest) return;
    // Disarmed means out of epoll: even with no events asked for, epoll
    // would report an error or hang-up on the fd, level-triggered, forever.
    if (interest == 0) {
        if (registered) {
            ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
            interest_.erase(found);
        }
        return;
    }
    epoll_event event{};
    event.events = epoll_events(interest);
    event.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &event) < 0)
        throw std::system_error(errno, std::generic_category(), registered ? "epoll_ctl mod" : "epoll_ctl add");
    interest_[fd] = interest;
}

void EventLoop::unwatch(int fd) {
    std::lock_guard lock(mutex_);  // waits for a running handler to finish
    {
        std::lock_guard interest_lock(interest_mutex_);
        apply_interest(fd, 0);
    }
    handlers_.erase(fd);
}

void EventLoop::add_poller(Poller& poller) {
    std::lock_guard lock(mutex_);
    pollers_.push_back({&poller, false});
}

void EventLoop::remove_poller(Poller& poller) {
    std::lock_guard lock(mutex_);  // waits for a running call to finish
    std::erase_if(pollers_, [&](const PollerEntry& entry) { return entry.poller == &poller; });
}

EventLoop::PollStats EventLoop::poll_stats() const {
    return {.phases = phases_.load(std::memory_order_relaxed),
            .caught = caught_.load(std::memory_order_relaxed),
            .window_ns = window_ns_.load(std::memory_order_relaxed),
            .max_window_ns = static_cast<uint64_t>(max_window_.count())};
}

void EventLoop::run() {
    using Clock = std::chrono::steady_clock;
    bool polled_before = false;
    Clock::time_point last_work;
    for (;;) {
        if (dispatch(-1) < 0) return;
        if (max_window_.count() == 0) continue;
        {
            std::lock_guard lock(mutex_);
            if (pollers_.empty()) continue;
        }
        // How long after the last work this wake came: what a window would
        // have had to span to catch it.
        if (polled_before) adapt_window(Clock::now() - last_work);
        polled_before = true;
        if (!poll_phase()) return;
        last_work = Clock::now();
    }
}

void EventLoop::adapt_window(std::chrono::nanoseconds gap) {
    if (mode_ == PollWindow::Fixed) return;
    if (gap > max_window_) {
        window_ /= 2;
        if (window_ < kPollWindowStart) window_ = std::chrono::nanoseconds{0};
    } else if (gap > window_) {
        window_ = std::min(max_window_, std::max(window_ * 2, kPollWindowStart));
    }
    window_ns_.store(static_cast<uint64_t>(window_.count()), std::memory_order_relaxed);
}

bool EventLoop::poll_phase() {
    using Clock = std::chrono::steady_clock;
    if (window_.count() == 0) return true;
    phases_.fetch_add(1, std::memory_order_relaxed);
    bool caught = false;
    auto last_work = Clock::now();
    for (;;) {
        const int handled = dispatch(0);
        if (handled < 0) {
            end_polling();
            return false;
        }
        const bool found = poll_once() || handled > 0;
        const auto now = Clock::now();
        if (found) {
            caught = true;
            last_work = now;
            continue;
        }
        // An empty pass gives the CPU to whatever else is runnable on it:
        // on a small host that is the work being waited for (a vCPU, an
        // io_uring worker), which is how polling stays a win there (+10%
        // at depth 1, +25% at depth 32 on 2 cores). Alone, it costs a
        // system call per pass.
        std::this_thread::yield();
        if (now - last_work < window_) continue;
        // Nothing for a whole window: notifications on, and the pollers'
        // re-check. Work that slipped in at the switch keeps the phase going.
        if (!end_polling()) break;
        caught = true;
        last_work = Clock::now();
    }
    if (caught) caught_.fetch_add(1, std::memory_order_relaxed);
    return true;
}

bool EventLoop::poll_once() {
    bool found = false;
    std::lock_guard lock(mutex_);
    for (PollerEntry& entry : pollers_) {
        if (!entry.polling) {
            entry.poller->begin_polling();
            entry.polling = true;
        }
        found = entry.poller->poll() || found;
    }
    return found;
}

bool EventLoop::end_polling() {
    bool found = false;
    std::lock_guard lock(mutex_);
    for (PollerEntry& entry : pollers_) {
        if (!entry.polling) continue;
        entry.polling = false;
        found = entry.poller->end_polling() || found;
    }
    return found;
}

int EventLoop::dispatch(int timeout_ms) {
    epoll_event events[16];
    const int ready = ::epoll_wait(epoll_.get(), events, 16, timeout_ms);
    if (ready < 0) {
        if (errno == EINTR) return 0;
        spdlog::error("event loop: epoll_wait: {}", std::system_category().message(errno));
        return -1;
    }
    for (int i = 0; i < ready; ++i) {
        const int fd = events[i].data.fd;
        if (fd == wake_.get()) return -1;
        std::lock_guard lock(mutex_);
        // A handler removed earlier in this batch must not run.
        auto it = handlers_.find(fd);
        if (it != handlers_.end()) it->second(ready_bits(events[i].events));
    }
    return ready;
}

}  // namespace minikvm
