// libFuzzer target: a guest driver that does anything at all. The input is a
// guest memory image plus a sequence of register accesses to a legacy
// virtio-pci transport with a real device behind it (virtio-console,
// virtio-blk, virtio-net or virtio-rng), interleaved with host-side events (console
// input and terminal resizes; for the disk, waiting for its I/O and the
// image file shrinking or growing under it; for the network card, frames
// from the host, tap wakeups and the host draining what was sent). Built with ASan+UBSan when
// meson's `fuzz` option is on (clang only): any crash, out-of-bounds access
// or UB fails the run.

#include <sys/mman.h>
#include <sys/socket.h>
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
#include <vector>

#include "devices/irq_line.h"
#include "devices/msi_sender.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_pci_legacy.h"
#include "virtio/virtio_rng.h"
#include "vmm/backends/block/disk_image.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/unique_fd.h"

namespace {

using namespace minikvm;

constexpr uint64_t kMemorySize = 1 << 20;
constexpr uint64_t kDiskSectors = 128;  // 64 KiB

// Input layout:
//   [0]        device (mod 4): 0 virtio-console, 1 virtio-blk, 2 virtio-net,
//              3 virtio-rng (no host-side events: kinds 2 and 3 do nothing)
//   [1]        number of operations N (0..255)
//   [2..2+8N)  operations, 8 bytes each:
//                kind (mod 5): 0 register read, 1 register write,
//                  console: 2 input of `value % 1025` bytes, 3 resize
//                  disk:    2 wait for all I/O in flight,
//                           3 truncate the image to `value % 257` sectors
//                  net:     2 the host sends a frame (see host_frame()),
//                           3 even: the tap is ready for what the device
//                             polls (its handler runs), odd: the host reads
//                             every frame the device sent
//                  4: the driver stores `value` in guest memory at
//                     4 x (offset | high << 8): rings and requests anywhere
//                     in the first 256 KiB, however short the input
//                offset within the register block (mod the BAR size)
//                width selector (mod 3): 1, 2 or 4 bytes
//                high: address bits for kind 4; for kinds 0 and 1, where
//                  the access goes: bit 7 PCI configuration space -- the
//                  command register (Bus Master Enable) when the offset's
//                  bit 7 is set, else the MSI-X capability on (offset mod
//                  16: Message Control's enable and mask bits) --, else
//                  bit 6 the MSI-X BAR (table and PBA, offset x 16 +
//                  (high & 15)), else the registers. Bus mastering starts
//                  on, as a driver sets it before anything else.
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

// Every transport has MSI-X; its vectors go nowhere.
struct NullMsi : MsiSender {
    void send(uint16_t, const MsiMessage&) override {}
};

// Where an access of kind 0 or 1 goes (see the input layout).
enum class Target { Registers, Config, MsixBar };
Target target_of(uint8_t high) {
    if ((high & 0x80) != 0) return Target::Config;
    if ((high & 0x40) != 0) return Target::MsixBar;
    return Target::Registers;
}

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

// The net card's tap: one end of a datagram socketpair (the host holds the
// other), with a small send buffer so transmits meet EAGAIN. Readiness is
// driven by the input, not by a thread: runs stay deterministic.
class FuzzTap : public NetBackend {
public:
    explicit FuzzTap(UniqueFd fd) : fd_(std::move(fd)) {}
    int fd() const override { return fd_.get(); }
    const std::string& name() const override { return name_; }
    std::string label() const override { return "tap " + name_; }
    void set_offloads(unsigned) override {}
    void set_header_size(int) override {}

private:
    UniqueFd fd_;
    std::string name_ = "fuzztap";
};

struct ManualWatcher : EventSources {
    uint32_t interest = 0;
    Handler handler;
    void watch(int, uint32_t wanted, Handler on_ready) override {
        interest = wanted;
        handler = std::move(on_ready);
    }
    void set_interest(int, uint32_t wanted) override { interest = wanted; }
    void unwatch(int) override { handler = nullptr; }
};

// A frame from the host: 12 header bytes shaped by `value` (flags, every
// gso_type, offsets), then filler; `value % 1700` bytes, or with the top bit
// up to 70000 (a GSO frame, or too big for any buffer).
std::vector<uint8_t> host_frame(uint32_t value) {
    const size_t length = (value & 0x8000'0000U) != 0 ? value % 70001 : value % 1700;
    std::vector<uint8_t> frame(length);
    for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<uint8_t>(i * 13 + value);
    const uint8_t header[12] = {static_cast<uint8_t>(value & 3), static_cast<uint8_t>((value >> 2) & 0x85), 54, 0,
                                static_cast<uint8_t>(value >> 8), 5, 34, 0, 16, 0, 0, 0};
    std::copy_n(header, std::min(frame.size(), sizeof header), frame.begin());
    return frame;
}

struct FuzzNet {
    FuzzNet() {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0)
            throw std::system_error(errno, std::generic_category(), "socketpair");
        host.reset(fds[1]);
        const int small = 16384;
        ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        device.emplace("fuzz-net", std::make_unique<FuzzTap>(UniqueFd(fds[0])),
                       MacAddress{{0x52, 0x54, 0, 0x12, 0x34, 0x56}}, watcher);
    }
    void send(uint32_t value) {
        const std::vector<uint8_t> frame = host_frame(value);
        [[maybe_unused]] ssize_t n = ::send(host.get(), frame.data(), frame.size(), MSG_DONTWAIT);
    }
    void ready_or_drain(uint32_t value) {
        if ((value & 1) == 0) {
            if (watcher.interest != 0 && watcher.handler) watcher.handler(watcher.interest);
            return;
        }
        while (::recv(host.get(), sink.data(), sink.size(), MSG_DONTWAIT) >= 0) {}
    }
    UniqueFd host;
    std::vector<uint8_t> sink = std::vector<uint8_t>(70000);
    ManualWatcher watcher;
    std::optional<VirtioNet> device;  // last: goes first, unwatching
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // Every rule a fuzzed driver breaks logs a line; millions would only slow the run.
    spdlog::set_level(spdlog::level::off);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const unsigned kind = data[0] % 4;
    const bool disk = kind == 1;
    const bool net = kind == 2;
    const bool rng = kind == 3;
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
    std::optional<VirtioRng> entropy;
    std::optional<FuzzNet> card;  // a fresh one per input: cheap, no threads
    VirtioDevice* device = nullptr;
    if (net) {
        device = &*card.emplace().device;
    } else if (disk) {
        fuzz_disk().clear();
        device = fuzz_disk().device.get();
    } else if (rng) {
        device = &entropy.emplace("fuzz-rng");
    } else {
        device = &console.emplace("fuzz-console", [](std::span<const uint8_t>) {}, VirtioConsole::TerminalSize{80, 25});
    }
    NullMsi msi;
    VirtioPciLegacy transport(*device, memory, net ? "fuzz-net" : disk ? "fuzz-blk" : rng ? "fuzz-rng" : "fuzz-console",
                              nullptr, nullptr, &msi);
    transport.connect_intx(irq);
    MsixCapability& msix = *transport.msix();
    {
        const uint8_t bus_master[2] = {PciConfigSpace::kCommandBusMaster, 0};
        transport.config().write(PciConfigSpace::kCommand, bus_master);
        transport.config_written(PciConfigSpace::kCommand, 2);
    }

    for (size_t i = 0; i < count; ++i) {
        const Operation op = decode(data + 2 + 8 * i);
        const uint32_t offset = op.offset % transport.bar_size();
        uint8_t bytes[4] = {static_cast<uint8_t>(op.value), static_cast<uint8_t>(op.value >> 8),
                            static_cast<uint8_t>(op.value >> 16), static_cast<uint8_t>(op.value >> 24)};
        // Accesses never cross the end of the BAR: the bus only routes those.
        const uint32_t width = std::min<uint32_t>(op.width, transport.bar_size() - offset);
        const Target target = target_of(op.high);
        const uint32_t config_offset = (op.offset & 0x80) != 0 ? PciConfigSpace::kCommand + (op.offset & 1u)
                                                               : msix.offset() + op.offset % 16u;
        const uint32_t bar_offset = std::min((op.offset * 16u + (op.high & 15u)), msix.bar_size() - op.width);
        switch (op.kind) {
            case 0:
                if (target == Target::Config) transport.config().read(config_offset, std::span(bytes, op.width));
                else if (target == Target::MsixBar) msix.read(bar_offset, std::span(bytes, op.width));
                else transport.read(offset, std::span(bytes, width));
                break;
            case 1:
                if (target == Target::Config) {
                    // As the host bridge does: the write, then the device hears of it.
                    transport.config().write(config_offset, std::span<const uint8_t>(bytes, op.width));
                    transport.config_written(config_offset, op.width);
                } else if (target == Target::MsixBar) {
                    msix.write(bar_offset, std::span<const uint8_t>(bytes, op.width));
                } else {
                    transport.write(offset, std::span<const uint8_t>(bytes, width));
                }
                break;
            case 2:
                if (rng) break;
                if (net) card->send(op.value);
                else if (disk) fuzz_disk().device->wait_idle();
                else console->receive(std::span(kInput).first(op.value % (kInput.size() + 1)));
                break;
            case 3:
                if (rng) break;
                if (net) {
                    card->ready_or_drain(op.value);
                } else if (disk) {
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
