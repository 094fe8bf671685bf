#include "vmm/app/terminal.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

namespace minikvm {

namespace {

void write_all(int fd, std::span<const uint8_t> bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::write(fd, bytes.data(), bytes.size());
        if (n > 0) {
            bytes = bytes.subspan(static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            pollfd out{fd, POLLOUT, 0};
            ::poll(&out, 1, 100);
            continue;
        }
        return;
    }
}

}  // namespace

void write_to_stdout(std::span<const uint8_t> bytes) { write_all(STDOUT_FILENO, bytes); }

void write_to_stderr(std::span<const uint8_t> bytes) { write_all(STDERR_FILENO, bytes); }

std::optional<VirtioConsole::TerminalSize> stdout_terminal_size() {
    winsize size{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) != 0 || size.ws_col == 0 || size.ws_row == 0) return std::nullopt;
    return VirtioConsole::TerminalSize{size.ws_col, size.ws_row};
}

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
