// libFuzzer target: a guest driver that does anything at all. The input is a
// guest memory image plus a sequence of register accesses to a legacy
// virtio-pci transport with a real device behind it (virtio-console; block
// and net join as they land), interleaved with host-side events (console
// input, terminal resizes). Built with ASan+UBSan when meson's `fuzz` option
// is on (clang only): any crash, out-of-bounds access or UB fails the run.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "devices/irq_line.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_pci_legacy.h"
#include "vmm/guest_memory.h"

namespace {

using namespace minikvm;

constexpr uint64_t kMemorySize = 1 << 20;

// Input layout:
//   [0]        number of operations N (0..255)
//   [1..8N]    operations, 8 bytes each:
//                kind (mod 4): 0 register read, 1 register write,
//                              2 console input of `value & 0x3ff` bytes, 3 resize
//                offset within the register block (mod the BAR size)
//                width selector (mod 3): 1, 2 or 4 bytes
//                unused
//                value, 32-bit little-endian
//   [1+8N..]   guest memory contents from address 0
struct Operation {
    uint8_t kind;
    uint8_t offset;
    uint8_t width;
    uint32_t value;
};

Operation decode(const uint8_t* bytes) {
    return {static_cast<uint8_t>(bytes[0] % 4), bytes[1], static_cast<uint8_t>(1u << (bytes[2] % 3)),
            static_cast<uint32_t>(bytes[4] | bytes[5] << 8 | bytes[6] << 16 | uint32_t{bytes[7]} << 24)};
}

struct NullIrq : IrqLine {
    void set_level(bool) override {}
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // Every rule a fuzzed driver breaks logs a line; millions would only slow the run.
    spdlog::set_level(spdlog::level::off);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const size_t count = data[0];
    const size_t operations_end = 1 + 8 * count;
    if (size < operations_end) return 0;

    GuestMemory memory = GuestMemory::allocate(kMemorySize);
    const std::span<const uint8_t> image(data + operations_end, std::min<size_t>(size - operations_end, kMemorySize));
    memory.write(0, image);

    NullIrq irq;  // outlives the transport, which lowers it when it resets
    VirtioConsole console("fuzz-console", [](std::span<const uint8_t>) {}, VirtioConsole::TerminalSize{80, 25});
    VirtioPciLegacy transport(console, memory, "fuzz-console");
    transport.connect_intx(irq);

    static constexpr std::array<uint8_t, 1024> kInput = [] {
        std::array<uint8_t, 1024> bytes{};
        for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7);
        return bytes;
    }();

    for (size_t i = 0; i < count; ++i) {
        const Operation op = decode(data + 1 + 8 * i);
        const uint32_t offset = op.offset % transport.bar_size();
        uint8_t bytes[4] = {static_cast<uint8_t>(op.value), static_cast<uint8_t>(op.value >> 8),
                            static_cast<uint8_t>(op.value >> 16), static_cast<uint8_t>(op.value >> 24)};
        // Accesses never cross the end of the BAR: the bus only routes those.
        const uint32_t width = std::min<uint32_t>(op.width, transport.bar_size() - offset);
        switch (op.kind) {
            case 0: transport.read(offset, std::span(bytes, width)); break;
            case 1: transport.write(offset, std::span<const uint8_t>(bytes, width)); break;
            case 2: console.receive(std::span(kInput).first(op.value % (kInput.size() + 1))); break;
            case 3: console.set_size({static_cast<uint16_t>(op.value), static_cast<uint16_t>(op.value >> 16)}); break;
        }
    }
    return 0;
}
