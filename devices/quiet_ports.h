#pragma once
// Ports that guests poke for timing or probing (POST code 0x80, the DMA page
// registers, the 0xed delay port): writes are dropped and reads return
// all-ones, without the "unclaimed port" debug line.

#include <algorithm>
#include <span>

#include "vmm/core/bus.h"

namespace minikvm {

class QuietPorts : public BusDevice {
public:
    void read(uint64_t, std::span<uint8_t> data) override { std::fill(data.begin(), data.end(), 0xff); }
    void write(uint64_t, std::span<const uint8_t>) override {}
};

}  // namespace minikvm
