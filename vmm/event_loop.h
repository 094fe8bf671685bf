#pragma once
// One thread that waits on many file descriptors (epoll) and runs a callback
// when one becomes readable: how device backends hear queue notifications
// (ioeventfds), host input and I/O completions without a thread each.

#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "vmm/unique_fd.h"

namespace minikvm {

class EventLoop {
public:
    using Handler = std::function<void()>;

    EventLoop();
    ~EventLoop();  // stops and joins the thread
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Calls `handler` on the loop thread whenever `fd` is readable (level-
    // triggered: the handler must drain it). The caller keeps `fd` open
    // until remove(fd).
    void add(int fd, Handler handler);
    // After remove() returns, the handler is not running and never runs again.
    void remove(int fd);

private:
    void run();

    UniqueFd epoll_;
    UniqueFd wake_;
    std::mutex mutex_;  // guards handlers_; held while a handler runs
    std::unordered_map<int, Handler> handlers_;
    std::thread thread_;
};

}  // namespace minikvm
