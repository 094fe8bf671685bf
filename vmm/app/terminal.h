#pragma once
// The host terminal as the guest's console sees it: raw mode for the
// lifetime of a RawTerminal (so the guest, not the host tty, sees Ctrl-C
// and line editing, restored on every exit path that unwinds), the guest's
// output written to stdout, and stdout's size.

#include <termios.h>

#include <cstdint>
#include <optional>
#include <span>

#include "virtio/virtio_console.h"

namespace minikvm {

// The guest's console bytes go to stdout as they come; a closed stdout just
// discards them (the VM keeps running).
void write_to_stdout(std::span<const uint8_t> bytes);
// The same for stderr (--exec: the guest kernel's and init's messages).
void write_to_stderr(std::span<const uint8_t> bytes);

// The host terminal's size, when stdout is one.
std::optional<VirtioConsole::TerminalSize> stdout_terminal_size();

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
