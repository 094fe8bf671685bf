#pragma once
// One thread that waits on many file descriptors (epoll) and runs a callback
// when one becomes ready: how device backends hear queue notifications
// (ioeventfds), host input, I/O completions and tap traffic without a
// thread each.
//
// Adaptive polling. With a poll window, every wake is followed by a polling
// phase: the loop keeps looking at its fds (without sleeping) and at its
// pollers, with the pollers' notifications off, until nothing has turned up
// for `window` nanoseconds; then the pollers' notifications go back on (with
// their re-check) and the loop sleeps. The window adapts per loop the way
// KVM's halt-polling does: it grows (doubling, from kPollWindowStart) when
// the loop slept less than the cap after a phase (a longer phase would have
// caught the work), shrinks (halving, to 0 below the start) when it slept
// longer than the cap, and stays while phases catch the work.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "vmm/core/event_sources.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class EventLoop : public EventSources {
public:
    static constexpr std::chrono::nanoseconds kPollWindowStart{10'000};

    struct PollStats {
        uint64_t phases = 0;       // polling phases run
        uint64_t caught = 0;       // phases in which a poller or fd found work
        uint64_t window_ns = 0;    // the current window
        uint64_t max_window_ns = 0;
    };

    // Adaptive: the window as described above. Fixed: always the cap (tests
    // that need every phase to last).
    enum class PollWindow { Adaptive, Fixed };

    // `max_poll_window` 0: no polling, pollers are never called.
    explicit EventLoop(std::chrono::nanoseconds max_poll_window = std::chrono::nanoseconds{0},
                       PollWindow mode = PollWindow::Adaptive);
    ~EventLoop() override;  // stops and joins the thread
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // EventSources. Handlers run on the loop thread, level-triggered: a
    // handler must drain its fd (or lower its interest).
    void watch(int fd, uint32_t interest, Handler handler) override;
    void set_interest(int fd, uint32_t interest) override;
    void unwatch(int fd) override;
    void add_poller(Poller& poller) override;
    void remove_poller(Poller& poller) override;

    PollStats poll_stats() const;

private:
    struct PollerEntry {
        Poller* poller;
        bool polling;  // begin_polling() called, end_polling() not yet
    };

    void run();
    // One epoll_wait with `timeout_ms` and the handlers for what it found.
    // Returns the number of fds handled, or -1 when the loop must stop.
    int dispatch(int timeout_ms);
    // The polling phase after a wake; false when the loop must stop.
    bool poll_phase();
    // poll() on every poller (begin_polling() first where due); any found work.
    bool poll_once();
    // end_polling() on every poller that polls; any found work.
    bool end_polling();
    void adapt_window(std::chrono::nanoseconds slept);
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
    std::vector<PollerEntry> pollers_;            // guarded by mutex_
    const std::chrono::nanoseconds max_window_;
    const PollWindow mode_;
    // Loop thread only, published for poll_stats().
    std::chrono::nanoseconds window_{0};
    std::atomic<uint64_t> window_ns_{0};
    std::atomic<uint64_t> phases_{0};
    std::atomic<uint64_t> caught_{0};
    std::thread thread_;
};

}  // namespace minikvm
