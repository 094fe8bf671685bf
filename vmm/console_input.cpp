#include "vmm/console_input.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "vmm/exit_codes.h"

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

ConsoleInput::ConsoleInput(int input_fd, ConsoleInputSink& sink, StopRequest& stop, bool escapes_enabled)
    : input_fd_(input_fd),
      sink_(sink),
      stop_(stop),
      escapes_enabled_(escapes_enabled),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    thread_ = std::thread([this] { run(); });
}

ConsoleInput::~ConsoleInput() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
    if (thread_.joinable()) thread_.join();
}

void ConsoleInput::run() {
    EscapeFilter escapes;
    uint8_t buffer[256];
    std::vector<uint8_t> forward;
    for (;;) {
        pollfd fds[2] = {{input_fd_, POLLIN, 0}, {wake_.get(), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (fds[1].revents) return;  // shutting down
        ssize_t n = ::read(input_fd_, buffer, sizeof(buffer));
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) return;  // EOF: the guest simply gets no more input
        std::span<const uint8_t> bytes(buffer, static_cast<size_t>(n));
        if (!escapes_enabled_) {
            deliver(bytes);
            continue;
        }
        forward.clear();
        EscapeFilter::Command command = escapes.filter(bytes, forward);
        deliver(forward);
        if (command == EscapeFilter::Command::Quit) {
            stop_.request(to_int(ExitCode::Stopped), "console escape Ctrl-A x");
            return;
        }
        if (command == EscapeFilter::Command::Help)
            std::fputs("\r\nminikvm console: Ctrl-A x  stop the VM | Ctrl-A Ctrl-A  send Ctrl-A | Ctrl-A h  this help\r\n",
                       stderr);
    }
}

void ConsoleInput::deliver(std::span<const uint8_t> bytes) {
    // Never drop input: wait for the guest to drain its buffer.
    while (!bytes.empty() && !stop_.requested()) {
        size_t taken = sink_.receive(bytes);
        bytes = bytes.subspan(taken);
        if (!bytes.empty()) sink_.wait_for_receive_space(100);
    }
}

}  // namespace minikvm
