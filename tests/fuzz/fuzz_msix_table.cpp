// libFuzzer target: a driver hammering an MSI-X table (devices/msix_table.h)
// with writes and reads of any width and offset, control changes and device
// signals in any order. Checked on every step: no vector is delivered while
// masked or disabled, a delivered message is always in the interrupt window,
// and a vector is pending only while it is masked (or the function is). The
// dictionary holds an interrupt-window address, so deliveries happen.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "devices/msix_table.h"

using namespace minikvm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const uint16_t vectors = static_cast<uint16_t>(data[0] % 70 + 1);
    bool enabled = false, function_masked = false;
    std::vector<uint16_t> delivered;  // in this step; checked after it (deliver runs under the table's lock)
    MsixTable table(vectors, [&](uint16_t vector, const MsiMessage& message) {
        if ((message.address >> 20) != 0xfee) std::abort();
        delivered.push_back(vector);
    });
    // Start where a driver would have left it (every vector programmed and
    // unmasked), so deliveries happen and the input perturbs from there.
    for (uint16_t v = 0; v < vectors; ++v) {
        const uint32_t entry[4] = {0xfee00000u | (v & 0xffu) << 12, 0, 0x40u + v, 0};
        table.write_table(v * 16u, std::span(reinterpret_cast<const uint8_t*>(entry), sizeof entry));
    }
    size_t at = 1;
    while (at + 2 <= size) {
        const uint8_t op = data[at] % 5;
        const uint8_t arg = data[at + 1];
        at += 2;
        switch (op) {
            case 0: {  // write 1-8 bytes at an offset (possibly past the end)
                const size_t length = std::min<size_t>(arg % 8 + 1, size - at);
                const uint64_t offset = at < size ? (uint64_t{data[at]} << 2 | arg) % (table.table_bytes() + 16) : 0;
                table.write_table(offset, std::span(data + at, length));
                at += length;
                break;
            }
            case 1: {
                uint8_t buffer[8];
                table.read_table(arg * 3u, std::span(buffer, arg % 8 + 1));
                table.read_pba(arg % 24, std::span(buffer, arg % 8 + 1));
                break;
            }
            case 2:
                enabled = arg & 1;
                function_masked = arg & 2;
                table.set_control(enabled, function_masked);
                break;
            case 3: table.signal(static_cast<uint16_t>(arg % (vectors + 2))); break;
            case 4:
                table.reset();
                enabled = function_masked = false;
                break;
        }
        // Deliveries happen only where the step left the vector deliverable.
        for (uint16_t v : delivered)
            if (v >= vectors || !enabled || function_masked || table.masked(v) || table.pending(v)) std::abort();
        delivered.clear();
        for (uint16_t v = 0; v < vectors; ++v)
            if (table.pending(v) && enabled && !function_masked && !table.masked(v)) std::abort();
    }
    return 0;
}
