#include "vmm/terminal.h"

#include <unistd.h>

namespace minikvm {

RawTerminal::RawTerminal(int fd) : fd_(fd) {
    if (!::isatty(fd) || ::tcgetattr(fd, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    // Keep output post-processing off too: the guest sends its own CR LF.
    if (::tcsetattr(fd, TCSAFLUSH, &raw) == 0) active_ = true;
}

RawTerminal::~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSAFLUSH, &saved_);
}

}  // namespace minikvm
