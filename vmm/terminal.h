#pragma once
// Puts a terminal into raw mode for the lifetime of the object (so the
// guest, not the host tty, sees Ctrl-C and line editing) and restores it on
// every exit path that unwinds.

#include <termios.h>

namespace minikvm {

class RawTerminal {
public:
    // Does nothing when `fd` is not a terminal.
    explicit RawTerminal(int fd);
    ~RawTerminal();
    RawTerminal(const RawTerminal&) = delete;
    RawTerminal& operator=(const RawTerminal&) = delete;

    bool active() const { return active_; }

private:
    int fd_;
    bool active_ = false;
    termios saved_{};
};

}  // namespace minikvm
