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
};

}  // namespace minikvm
