#include "vmm/core/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

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

EventLoop::EventLoop()
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)), wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
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

void EventLoop::run() {
    epoll_event events[16];
    for (;;) {
        int ready = ::epoll_wait(epoll_.get(), events, 16, -1);
        if (ready < 0) {
            if (errno == EINTR) continue;
            spdlog::error("event loop: epoll_wait: {}", std::system_category().message(errno));
            return;
        }
        for (int i = 0; i < ready; ++i) {
            int fd = events[i].data.fd;
            if (fd == wake_.get()) return;
            std::lock_guard lock(mutex_);
            // A handler removed earlier in this batch must not run.
            auto it = handlers_.find(fd);
            if (it != handlers_.end()) it->second(ready_bits(events[i].events));
        }
    }
}

}  // namespace minikvm
