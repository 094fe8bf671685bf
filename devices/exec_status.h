#pragma once
// The exit-status port of `minikvm --exec`: the guest's init (boot/exec_init/)
// writes the command's exit status, one byte, to port 0xf5, and minikvm exits
// with exactly that status.
//
// Apart from debug-exit (port 0xf4) on purpose: debug-exit maps a value V to
// (V << 1) | 1, odd codes that cannot collide with minikvm's own even ones and
// that match QEMU's isa-debug-exit; --exec must return the command's own
// status (0, 1, 127, 130...), as if the command had run on the host.

#include <cstdint>
#include <functional>
#include <span>

#include "vmm/core/bus.h"

namespace minikvm {

class ExecStatus : public BusDevice {
public:
    static constexpr uint16_t kPort = 0xf5;
    // Two registers: the status at 0xf5; at 0xf6 the init says, with any
    // byte, that the command's terminal is open and set up, so input from
    // minikvm's stdin is no longer lost (a tty nobody has open drops it).
    static constexpr uint16_t kPortCount = 2;
    static constexpr uint64_t kTerminalReady = 1;

    explicit ExecStatus(std::function<void(uint8_t status)> on_status,
                        std::function<void()> on_terminal_ready = {})
        : on_status_(std::move(on_status)), on_terminal_ready_(std::move(on_terminal_ready)) {}

    // Reads return 0xff, as an unclaimed port does: nothing to read here.
    void read(uint64_t, std::span<uint8_t> data) override;
    // At the status register, any width: the low byte is the status.
    void write(uint64_t offset, std::span<const uint8_t> data) override;

private:
    std::function<void(uint8_t)> on_status_;
    std::function<void()> on_terminal_ready_;
};

}  // namespace minikvm
