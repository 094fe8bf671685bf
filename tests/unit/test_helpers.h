#pragma once
// Small fakes and byte helpers shared by the device unit tests.

#include <cstddef>
#include <cstdint>
#include <span>

#include "devices/irq_line.h"

namespace test_helpers {

// An interrupt line that remembers its level and counts rising edges.
struct FakeIrq : minikvm::IrqLine {
    bool level = false;
    int rising_edges = 0;
    void set_level(bool asserted) override {
        if (asserted && !level) ++rising_edges;
        level = asserted;
    }
};

// Little-endian value of bytes[0..width), width <= 4.
inline uint32_t from_le(std::span<const uint8_t> bytes) {
    uint32_t value = 0;
    for (size_t i = 0; i < bytes.size(); ++i) value |= uint32_t{bytes[i]} << (8 * i);
    return value;
}

// Writes the low bytes.size() bytes of value, little-endian.
inline void to_le(uint32_t value, std::span<uint8_t> bytes) {
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i));
}

}  // namespace test_helpers
