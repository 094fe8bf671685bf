#pragma once
// The debug-exit port: a guest writes a byte V to port 0xf4 and minikvm exits
// with status (V << 1) | 1 -- the same port and formula as QEMU's
// `-device isa-debug-exit,iobase=0xf4`, so CI guests work under both.

#include <cstdint>
#include <functional>
#include <span>

#include "vmm/core/bus.h"

namespace minikvm {

class DebugExit : public BusDevice {
public:
    static constexpr uint16_t kPort = 0xf4;

    explicit DebugExit(std::function<void(uint8_t value)> on_exit) : on_exit_(std::move(on_exit)) {}

    void read(uint64_t, std::span<uint8_t> data) override;
    void write(uint64_t, std::span<const uint8_t> data) override;

private:
    std::function<void(uint8_t)> on_exit_;
};

}  // namespace minikvm
