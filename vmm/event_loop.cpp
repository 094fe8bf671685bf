#include "vmm/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace minikvm {

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

void EventLoop::add(int fd, Handler handler) {
    std::lock_guard lock(mutex_);
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) < 0)
        throw std::system_error(errno, std::generic_category(), "epoll_ctl add");
    handlers_[fd] = std::move(handler);
}

void EventLoop::remove(int fd) {
    std::lock_guard lock(mutex_);  // waits for a running handler to finish
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
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
            if (it != handlers_.end()) it->second();
        }
    }
}

}  // namespace minikvm
