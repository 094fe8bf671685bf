// libFuzzer target: a guest driver that does anything at all. The input is a
// guest memory image plus a sequence of register accesses to a legacy
// virtio-pci transport with a real device behind it (virtio-console or
// virtio-blk; net joins when it lands), interleaved with host-side events
// (console input and terminal resizes; for the disk, waiting for its I/O and
// the image file shrinking or growing under it). Built with ASan+UBSan when
// meson's `fuzz` option is on (clang only): any crash, out-of-bounds access
// or UB fails the run.

#include <sys/mman.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <system_error>

#include "devices/irq_line.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_pci_legacy.h"
#include "vmm/disk_image.h"
#include "vmm/event_loop.h"
#include "vmm/guest_memory.h"
#include "vmm/unique_fd.h"

namespace {

using namespace minikvm;

constexpr uint64_t kMemorySize = 1 << 20;
constexpr uint64_t kDiskSectors = 128;  // 64 KiB

// Input layout:
//   [0]        device: even virtio-console, odd virtio-blk
//   [1]        number of operations N (0..255)
//   [2..2+8N)  operations, 8 bytes each:
//                kind (mod 5): 0 register read, 1 register write,
//                  console: 2 input of `value % 1025` bytes, 3 resize
//                  disk:    2 wait for all I/O in flight,
//                           3 truncate the image to `value % 257` sectors
//                  4: the driver stores `value` in guest memory at
//                     4 x (offset | high << 8): rings and requests anywhere
//                     in the first 256 KiB, however short the input
//                offset within the register block (mod the BAR size)
//                width selector (mod 3): 1, 2 or 4 bytes
//                high: address bits for kind 4
//                value, 32-bit little-endian
//   [2+8N..]   guest memory contents from address 0
struct Operation {
    uint8_t kind;
    uint8_t offset;
    uint8_t width;
    uint8_t high;
    uint32_t value;
};

Operation decode(const uint8_t* bytes) {
    return {static_cast<uint8_t>(bytes[0] % 5), bytes[1], static_cast<uint8_t>(1u << (bytes[2] % 3)), bytes[3],
            static_cast<uint32_t>(bytes[4] | bytes[5] << 8 | bytes[6] << 16 | uint32_t{bytes[7]} << 24)};
}

struct NullIrq : IrqLine {
    void set_level(bool) override {}
};

// One disk for the whole run (an event loop thread and an I/O engine per
// input would make the fuzzer crawl): a memfd image, emptied before every
// input so runs do not depend on each other. The transport of each input
// resets the device when it goes, which waits for the I/O in flight.
struct FuzzDisk {
    FuzzDisk() : memfd(::memfd_create("fuzz-disk", MFD_CLOEXEC)) {
        if (!memfd) throw std::system_error(errno, std::generic_category(), "memfd_create");
        clear();
        DiskConfig config;
        config.path = "/proc/self/fd/" + std::to_string(memfd.get());
        config.serial = "FUZZ";
        device = std::make_unique<VirtioBlk>("fuzz-blk", DiskImage::open(config), config, loop);
    }
    void clear() {
        // Emptied and regrown: all zero, the size the device was opened with.
        if (::ftruncate(memfd.get(), 0) != 0 || ::ftruncate(memfd.get(), kDiskSectors * 512) != 0)
            throw std::system_error(errno, std::generic_category(), "ftruncate");
    }
    UniqueFd memfd;
    EventLoop loop;
    std::unique_ptr<VirtioBlk> device;  // last: its I/O uses the loop and the file
};

FuzzDisk& fuzz_disk() {
    static FuzzDisk disk;
    return disk;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // Every rule a fuzzed driver breaks logs a line; millions would only slow the run.
    spdlog::set_level(spdlog::level::off);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const bool disk = (data[0] & 1) != 0;
    const size_t count = data[1];
    const size_t operations_end = 2 + 8 * count;
    if (size < operations_end) return 0;

    GuestMemory memory = GuestMemory::allocate(kMemorySize);
    const std::span<const uint8_t> image(data + operations_end, std::min<size_t>(size - operations_end, kMemorySize));
    memory.write(0, image);

    static constexpr std::array<uint8_t, 1024> kInput = [] {
        std::array<uint8_t, 1024> bytes{};
        for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7);
        return bytes;
    }();

    NullIrq irq;  // outlives the transport, which lowers it when it resets
    std::optional<VirtioConsole> console;
    VirtioDevice* device = nullptr;
    if (disk) {
        fuzz_disk().clear();
        device = fuzz_disk().device.get();
    } else {
        device = &console.emplace("fuzz-console", [](std::span<const uint8_t>) {}, VirtioConsole::TerminalSize{80, 25});
    }
    VirtioPciLegacy transport(*device, memory, disk ? "fuzz-blk" : "fuzz-console");
    transport.connect_intx(irq);

    for (size_t i = 0; i < count; ++i) {
        const Operation op = decode(data + 2 + 8 * i);
        const uint32_t offset = op.offset % transport.bar_size();
        uint8_t bytes[4] = {static_cast<uint8_t>(op.value), static_cast<uint8_t>(op.value >> 8),
                            static_cast<uint8_t>(op.value >> 16), static_cast<uint8_t>(op.value >> 24)};
        // Accesses never cross the end of the BAR: the bus only routes those.
        const uint32_t width = std::min<uint32_t>(op.width, transport.bar_size() - offset);
        switch (op.kind) {
            case 0: transport.read(offset, std::span(bytes, width)); break;
            case 1: transport.write(offset, std::span<const uint8_t>(bytes, width)); break;
            case 2:
                if (disk) fuzz_disk().device->wait_idle();
                else console->receive(std::span(kInput).first(op.value % (kInput.size() + 1)));
                break;
            case 3:
                if (disk) {
                    // Someone else changes the file: reads past its end come up short.
                    [[maybe_unused]] int ignored = ::ftruncate(fuzz_disk().memfd.get(), (op.value % 257) * 512);
                } else {
                    console->set_size({static_cast<uint16_t>(op.value), static_cast<uint16_t>(op.value >> 16)});
                }
                break;
            case 4: {
                // The guest writes RAM while the device may be using it: that is allowed.
                const uint64_t address = 4 * (uint64_t{op.offset} | uint64_t{op.high} << 8);
                memory.write(address, std::span<const uint8_t>(bytes, 4));
                break;
            }
        }
    }
    return 0;
}
