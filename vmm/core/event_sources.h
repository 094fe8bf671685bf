#pragma once
// The one way a device, a transport or a backend hears about its file
// descriptors (queue-kick eventfds, I/O completions, tap readiness): run a
// handler when the fd is readable and/or writable, and change which of the
// two it waits for at any moment, from any thread. A network device waits
// for "readable" only while the guest has receive buffers (backpressure) and
// for "writable" only while a transmit is blocked. EventLoop implements it;
// unit tests drive handlers by hand and see what is armed.

#include <cstdint>
#include <functional>

namespace minikvm {

// A device that can find its work by looking (its rings, its completion
// queue) instead of waiting for an fd to wake it. While it is busy the event
// source may poll it for a while with the driver's notifications off, which
// spares the guest its notify exit per request (issue: exit-free I/O).
// Calls come from the polling thread; the poller takes its own lock.
class Poller {
public:
    virtual ~Poller() = default;
    // Polling starts: the device may tell the driver not to notify.
    virtual void begin_polling() = 0;
    // Does whatever work is there now, without blocking. Whether it found any.
    virtual bool poll() = 0;
    // Polling stops: notifications back on, then one more look, so work
    // made available just before the switch is not stranded waiting for a
    // notification the driver never sends. Whether that look found work.
    virtual bool end_polling() = 0;
};

class EventSources {
public:
    // Interest and readiness bits.
    static constexpr uint32_t kReadable = 1;
    static constexpr uint32_t kWritable = 2;
    // Reported only: the fd failed or hung up (it cannot be asked for).
    static constexpr uint32_t kError = 4;

    // `ready` holds the bits that are ready now.
    using Handler = std::function<void(uint32_t ready)>;

    virtual ~EventSources() = default;
    // Starts watching `fd` for `interest` (0: registered but disarmed; an
    // fd disarmed this way reports nothing, errors included). The caller
    // keeps `fd` open until unwatch(). Throws std::system_error.
    virtual void watch(int fd, uint32_t interest, Handler handler) = 0;
    // Changes the interest. Safe from any thread, the handler's own
    // included. A handler may still run once with readiness found just
    // before the change, so it must cope with nothing to do.
    virtual void set_interest(int fd, uint32_t interest) = 0;
    // After it returns the handler is not running and never runs again.
    // Not from inside the handler.
    virtual void unwatch(int fd) = 0;

    // Pollers (see Poller). A source that does not poll ignores them, and
    // the device lives on its fds' notifications alone. After
    // remove_poller() returns no call into the poller runs or will run.
    // Not from inside a poller call.
    virtual void add_poller(Poller&) {}
    virtual void remove_poller(Poller&) {}
};

}  // namespace minikvm
