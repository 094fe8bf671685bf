#include "vmm/backends/console_input.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "vmm/core/exit_codes.h"

namespace minikvm {

EscapeFilter::Command EscapeFilter::filter(std::span<const uint8_t> in, std::vector<uint8_t>& out) {
    Command command = Command::None;
    for (uint8_t byte : in) {
        if (!escape_pending_) {
            if (byte == kEscape) escape_pending_ = true;
            else out.push_back(byte);
            continue;
        }
        escape_pending_ = false;
        switch (byte) {
        case 'x':
        case 'X':
            command = Command::Quit;
            break;
        case 'h':
        case 'H':
        case '?':
            command = Command::Help;
            break;
        case kEscape:
            out.push_back(kEscape);
            break;
        default:  // not a command: pass both bytes on unchanged
            out.push_back(kEscape);
            out.push_back(byte);
            break;
        }
    }
    return command;
}

ConsoleInput::ConsoleInput(int input_fd, ConsoleInputSink& sink, StopRequest& stop, bool escapes_enabled,
                           bool eof_as_ctrl_d, bool held)
    : input_fd_(input_fd),
      sink_(sink),
      stop_(stop),
      escapes_enabled_(escapes_enabled),
      eof_as_ctrl_d_(eof_as_ctrl_d),
      held_(held),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    thread_ = std::thread([this] { run(); });
}

void ConsoleInput::release() {
    // The thread retries pending input every few milliseconds: it will see this.
    held_ = false;
}

ConsoleInput::~ConsoleInput() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
    if (thread_.joinable()) thread_.join();
}

void ConsoleInput::run() {
    // Enough for any paste; beyond it stdin is left unread until the guest
    // catches up (the escape then waits too).
    constexpr size_t kMaxPending = 64 * 1024;
    // How often input the guest refused is offered again.
    constexpr int kRetryIntervalMs = 10;

    EscapeFilter escapes;
    uint8_t buffer[256];
    bool input_open = true;
    for (;;) {
        deliver_pending();
        if (!input_open && pending_.empty()) return;  // EOF and all delivered
        const bool want_input = input_open && pending_.size() < kMaxPending;
        pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {input_fd_, static_cast<short>(want_input ? POLLIN : 0), 0}};
        if (::poll(fds, want_input ? 2 : 1, pending_.empty() ? -1 : kRetryIntervalMs) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (fds[0].revents) return;  // shutting down
        if (!want_input || fds[1].revents == 0) continue;
        ssize_t n = ::read(input_fd_, buffer, sizeof(buffer));
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) {  // EOF (or a dead stdin): the guest simply gets no more input
            input_open = false;
            if (eof_as_ctrl_d_) {
                constexpr uint8_t kCtrlD = 0x04;
                // A first Ctrl-D only ends a partial line; the next is EOF.
                if (line_open_) pending_.push_back(kCtrlD);
                pending_.push_back(kCtrlD);
            }
            continue;
        }
        std::span<const uint8_t> bytes(buffer, static_cast<size_t>(n));
        line_open_ = bytes.back() != '\n';
        if (!escapes_enabled_) {
            pending_.insert(pending_.end(), bytes.begin(), bytes.end());
            continue;
        }
        EscapeFilter::Command command = escapes.filter(bytes, pending_);
        if (command == EscapeFilter::Command::Quit) {
            stop_.request(to_int(ExitCode::Stopped), "console escape Ctrl-A x");
            return;
        }
        if (command == EscapeFilter::Command::Help)
            std::fputs("\r\nminikvm console: Ctrl-A x  stop the VM | Ctrl-A Ctrl-A  send Ctrl-A | Ctrl-A h  this help\r\n",
                       stderr);
    }
}

void ConsoleInput::deliver_pending() {
    if (pending_.empty() || held_) return;
    const size_t taken = sink_.receive(pending_);
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(taken));
}

}  // namespace minikvm
