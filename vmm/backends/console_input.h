#pragma once
// Feeds the host's standard input to the guest console device on a thread of
// its own, with the console escape when stdin is a terminal:
//   Ctrl-A x  stop the VM          Ctrl-A h  show this help
//   Ctrl-A Ctrl-A  send one Ctrl-A to the guest
// Input the guest cannot take yet (its buffer is full, or its driver has not
// posted receive buffers) is kept and offered again every few milliseconds;
// stdin is still read meanwhile (up to a limit), so Ctrl-A x always works.

#include <atomic>
#include <cstdint>
#include <span>
#include <thread>
#include <vector>

#include "vmm/core/stop_request.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

// Where console input goes: the UART or virtio-console.
class ConsoleInputSink {
public:
    virtual ~ConsoleInputSink() = default;
    // Accepts as many bytes as there is room for (possibly none); returns
    // how many. Bytes not taken are offered again later.
    virtual size_t receive(std::span<const uint8_t> bytes) = 0;
};

class EscapeFilter {
public:
    static constexpr uint8_t kEscape = 0x01;  // Ctrl-A
    enum class Command { None, Quit, Help };

    // Appends the bytes meant for the guest to `out`; returns the last escape
    // command seen in `in`.
    Command filter(std::span<const uint8_t> in, std::vector<uint8_t>& out);

private:
    bool escape_pending_ = false;
};

class ConsoleInput {
public:
    // With `eof_as_ctrl_d`, the end of the input reaches the guest as the
    // tty's end-of-file character (Ctrl-D; twice after a partial line), so
    // a command reading a canonical-mode tty sees EOF (--exec with stdin
    // from a file or pipe).
    // With `held`, input is read (and escapes work) but nothing reaches the
    // sink until release(): the guest has nowhere to keep it yet.
    ConsoleInput(int input_fd, ConsoleInputSink& sink, StopRequest& stop, bool escapes_enabled,
                 bool eof_as_ctrl_d = false, bool held = false);
    ~ConsoleInput();
    ConsoleInput(const ConsoleInput&) = delete;
    // Starts delivering held input. Any thread.
    void release();
    ConsoleInput& operator=(const ConsoleInput&) = delete;

private:
    void run();
    // Hands pending_ to the sink as far as it takes it.
    void deliver_pending();

    int input_fd_;
    ConsoleInputSink& sink_;
    StopRequest& stop_;
    bool escapes_enabled_;
    bool eof_as_ctrl_d_;
    std::atomic<bool> held_;
    bool line_open_ = false;  // the last byte read was not a newline
    UniqueFd wake_;
    std::vector<uint8_t> pending_;  // read, filtered, not yet taken by the guest
    std::thread thread_;
};

}  // namespace minikvm
