// The --exec status port: the byte the guest writes is the status, unchanged.

#include <catch2/catch.hpp>

#include <optional>
#include <vector>

#include "devices/debug_exit.h"
#include "devices/exec_status.h"
#include "vmm/core/bus.h"

using namespace minikvm;

TEST_CASE("exec status: every byte value reaches on_status unchanged") {
    std::vector<int> seen;
    ExecStatus port([&](uint8_t status) { seen.push_back(status); });
    for (int value = 0; value <= 255; ++value) {
        const uint8_t byte = static_cast<uint8_t>(value);
        port.write(0, std::span(&byte, 1));
    }
    REQUIRE(seen.size() == 256);
    for (int value = 0; value <= 255; ++value) CHECK(seen[static_cast<size_t>(value)] == value);
}

TEST_CASE("exec status: a wider write uses its low byte, an empty one does nothing") {
    std::vector<int> seen;
    ExecStatus port([&](uint8_t status) { seen.push_back(status); });
    const uint8_t word[] = {0x7e, 0x01};  // outw 0x017e: little-endian
    port.write(0, std::span(word, 2));
    const uint8_t dword[] = {0x03, 0xff, 0xff, 0xff};
    port.write(0, std::span(dword, 4));
    port.write(0, std::span<const uint8_t>());
    CHECK(seen == std::vector<int>{0x7e, 0x03});
}

TEST_CASE("exec status: reads return all ones and report nothing") {
    bool called = false;
    ExecStatus port([&](uint8_t) { called = true; });
    uint8_t data[4] = {0, 1, 2, 3};
    port.read(0, std::span(data, 4));
    for (uint8_t b : data) CHECK(b == 0xff);
    CHECK_FALSE(called);
}

TEST_CASE("exec status: on the I/O bus at 0xf5, beside debug-exit at 0xf4, each gets its own writes") {
    std::optional<int> status, debug;
    ExecStatus exec_port([&](uint8_t v) { status = v; });
    DebugExit debug_port([&](uint8_t v) { debug = v; });
    Bus io("io");
    io.add(ExecStatus::kPort, 1, exec_port);
    io.add(DebugExit::kPort, 1, debug_port);
    CHECK(ExecStatus::kPort == 0xf5);

    const uint8_t value = 42;
    CHECK(io.write(0xf5, std::span(&value, 1)));
    CHECK(status == 42);
    CHECK_FALSE(debug.has_value());
    // Unlike debug-exit's (V << 1) | 1, the status is the byte itself: 42
    // stays even, and 0 (success) is possible.
    const uint8_t zero = 0;
    CHECK(io.write(0xf5, std::span(&zero, 1)));
    CHECK(status == 0);
}

TEST_CASE("exec status: a write at 0xf6 says the terminal is ready, and is no status") {
    std::vector<int> seen;
    int ready = 0;
    ExecStatus exec_port([&](uint8_t v) { seen.push_back(v); }, [&] { ++ready; });
    Bus io("io");
    io.add(ExecStatus::kPort, ExecStatus::kPortCount, exec_port);
    const uint8_t one = 1;
    CHECK(io.write(0xf6, std::span(&one, 1)));
    CHECK(ready == 1);
    CHECK(seen.empty());
    const uint8_t seven = 7;
    CHECK(io.write(0xf5, std::span(&seven, 1)));
    CHECK(seen == std::vector<int>{7});
    CHECK(ready == 1);
}
