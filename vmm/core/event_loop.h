#pragma once
// One thread that waits on many file descriptors (epoll) and runs a callback
// when one becomes ready: how device backends hear queue notifications
// (ioeventfds), host input, I/O completions and tap traffic without a
// thread each.

#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "vmm/core/event_sources.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class EventLoop : public EventSources {
public:
    EventLoop();
    ~EventLoop() override;  // stops and joins the thread
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // EventSources. Handlers run on the loop thread, level-triggered: a
    // handler must drain its fd (or lower its interest).
    void watch(int fd, uint32_t interest, Handler handler) override;
    void set_interest(int fd, uint32_t interest) override;
    void unwatch(int fd) override;

private:
    void run();
    // Brings epoll in line with `interest` for `fd`; interest_mutex_ held.
    void apply_interest(int fd, uint32_t interest);

    UniqueFd epoll_;
    UniqueFd wake_;
    std::mutex mutex_;  // guards handlers_; held while a handler runs
    std::unordered_map<int, Handler> handlers_;
    // Separate, so a handler can change interest (its own included) while
    // mutex_ is held. Order: mutex_, then interest_mutex_.
    std::mutex interest_mutex_;
    std::unordered_map<int, uint32_t> interest_;  // what epoll has now; absent: not in epoll
    std::thread thread_;
};

}  // namespace minikvm
