#pragma once
// The PCI host bridge: PCI bus 0 as the guest sees it through configuration
// mechanism #1 (I/O ports 0xcf8-0xcff), and as the VMM sees it: slots, BAR
// addresses and interrupt routes.
//
// Ports. 0xcf8 is the 32-bit CONFIG_ADDRESS register (enable bit 31, bus
// 23:16, device 15:11, function 10:8, register 7:2). Only a dword access to
// 0xcf8 reaches it; byte and word accesses to 0xcf8-0xcfb are not config
// accesses, as on Intel chipsets and in QEMU: reads give all-ones, writes are
// dropped. That is also what Linux's probe expects: it writes a byte to 0xcfb
// before checking that CONFIG_ADDRESS kept its value, and it takes byte reads
// of 0 at 0xcf8/0xcfa for the old mechanism #2. 0xcfc-0xcff is the data
// window onto the dword CONFIG_ADDRESS selects: bytes, words and dwords at
// any port that fits, port - 0xcfc being the byte within the dword.
//
// Functions. Bus 0 only; every device is single-function. The bridge itself
// is 00:00.0, an Intel 0x8086:0x29c0 host bridge (class 0x060000), the
// identity QEMU's q35 uses, so guests know it. Another bus, function, an
// empty slot or CONFIG_ADDRESS without its enable bit: reads all-ones, writes
// ignored -- "no device here" to the guest.
//
// BARs. register_device() gives every BAR an address, first fit in the order
// the device lists them, each aligned to its size: I/O BARs from kIoWindow*,
// 32-bit memory BARs from kMemoryWindow* (below 4 GiB), 64-bit memory BARs
// under 64 MiB there too while they fit (so they work for guests that ignore
// the 64-bit window), and the others from the 64-bit window above RAM that
// the machine passes in (empty: none). It maps nothing: a BAR is on the
// IoBus or MmioBus only while the command register enables decoding for its
// kind, as on hardware and in QEMU (Linux enables decoding itself in
// pci_enable_device). When the guest moves a BAR or toggles decoding, the
// mapping follows. A BAR the guest moves onto a range that is taken (another
// BAR, the serial port, 0xcf8 itself) is logged once and stays unmapped
// until the guest moves it again.
//
// Interrupts. Every device gets INTA# wired to an IOAPIC input of its own,
// from GSIs 16-23: the IOAPIC pins above the 16 ISA IRQs, so nothing shares
// them with the serial port or the ACPI SCI (IRQ 9), and the MP table's ISA
// entries (IRQ n on pin n) never collide with a PCI entry. KVM routes GSI n to
// IOAPIC pin n. The GSI goes in the interrupt line register and in
// interrupt_routes(). Eight GSIs, so at most eight devices.
//
// Threads. vCPUs may access configuration space concurrently; one mutex
// makes every access, with the bus remapping it causes, atomic. The trace
// switch may be flipped from any thread.
//
// Debugging. set_trace(true) (`--trace pci`) logs at info level one line per
// access through the data window, and per BAR (un)mapping:
//   trace pci 00:01.0 read  off=0x10 len=4 val=0x0000c001
//   trace pci 00:01.0 write off=0x04 len=2 val=0x0001
//   trace pci 00:05.0 read  off=0x00 len=4 val=0xffffffff no device
//   trace pci 00:01.0 BAR0 map io 0xc000+0x20    (or unmap; mem, mem64)
// CONFIG_ADDRESS writes are not traced: each line already names the
// function and register they selected.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "devices/irq_line.h"
#include "devices/pci_config_space.h"
#include "devices/pci_device.h"
#include "devices/pci_interrupt_route.h"
#include "vmm/core/bus.h"
#include "vmm/core/guest_memory.h"

namespace minikvm {

// Guest-physical [start, end) where 64-bit BARs go; start == end: none.
struct PciMemory64Window {
    uint64_t start = 0;
    uint64_t end = 0;

    uint64_t size() const { return end - start; }
    bool empty() const { return start == end; }
};

class PciHostBridge : public BusDevice {
public:
    static constexpr uint16_t kBasePort = 0xcf8;  // CONFIG_ADDRESS; CONFIG_DATA is at 0xcfc
    static constexpr uint64_t kPortCount = 8;

    static constexpr PciIdentity kIdentity{.vendor_id = 0x8086, .device_id = 0x29c0, .class_code = 0x06'00'00};

    // Where register_device() places BARs: [start, end).
    static constexpr uint32_t kIoWindowStart = 0xc000;
    static constexpr uint32_t kIoWindowEnd = 0x1'0000;
    static constexpr uint32_t kMemoryWindowStart = static_cast<uint32_t>(GuestMemory::kMmioHoleStart);
    static constexpr uint32_t kMemoryWindowEnd = 0xe000'0000;  // leaves the top of the hole (IOAPIC, LAPIC) alone
    // 64-bit BARs this small try the 32-bit window first; larger ones would
    // crowd it (512 MiB in all) and go above 4 GiB.
    static constexpr uint64_t kMemory64InLowWindowBelow = 64ull << 20;

    static constexpr std::array<uint8_t, 8> kInterruptGsis{16, 17, 18, 19, 20, 21, 22, 23};

    // Makes the line that drives one GSI (in the machine: an IrqfdLevelLine
    // where KVM has resampling irqfds, else a KvmIrqLine).
    using IrqLineFactory = std::function<std::unique_ptr<IrqLine>(uint32_t gsi)>;

    // Outside the class so it can be a defaulted argument below (GCC needs
    // its member initializers complete before then).
    using Memory64Window = PciMemory64Window;

    // The buses are where BARs get mapped; both must outlive the bridge.
    // `window` must lie above 4 GiB (std::invalid_argument otherwise).
    PciHostBridge(IoBus& io_bus, MmioBus& mmio_bus, IrqLineFactory make_irq_line, Memory64Window window = {});
    // Takes the BAR mappings it made off the buses.
    ~PciHostBridge() override;

    PciHostBridge(const PciHostBridge&) = delete;
    PciHostBridge& operator=(const PciHostBridge&) = delete;

    // Puts `device` in the next free slot (1-31) and returns its address;
    // declares and places its BARs, sets interrupt pin INTA# and the line
    // register, and calls device.connect_intx(). The device must outlive the
    // bridge. Throws std::invalid_argument for a bad BAR or a device that is
    // already registered, std::runtime_error when slots, GSIs or the BAR
    // windows run out (naming the BAR and the windows' sizes, for a person
    // whose device has a BAR too large); the bridge is then unchanged, but
    // the device's config space may hold BARs already, so that device cannot
    // be registered again.
    PciBdf register_device(PciDevice& device);

    // Where 64-bit BARs go, for the ACPI _CRS.
    Memory64Window memory64_window() const { return memory64_window_; }

    // The machine's 64-bit window: 64 GiB from the first 1 GiB boundary at
    // or above both 4 GiB and `ram_end`, cut short at 2^physical_bits (what
    // the guest's CPU can address); empty when nothing is left.
    static Memory64Window memory64_window_above(uint64_t ram_end, unsigned physical_bits);

    // One route per registered device, for the MP table.
    std::vector<PciInterruptRoute> interrupt_routes() const;

    // Debug tracing (see above); off until set.
    void set_trace(bool on) { trace_.store(on, std::memory_order_relaxed); }
    bool trace() const { return trace_.load(std::memory_order_relaxed); }

    // BusDevice: `offset` is the port minus 0xcf8.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

private:
    class IntxLine;

    // One BAR and where it is on its bus.
    struct MappedBar {
        PciBar bar;
        std::optional<uint64_t> wanted;  // where the guest last had it decode; nullopt: nowhere
        bool mapped = false;             // whether `wanted` is actually on the bus
    };

    struct Slot {
        PciDevice* device = nullptr;
        uint8_t gsi = 0;
        std::vector<MappedBar> bars;
        std::unique_ptr<IntxLine> intx;
    };

    // What CONFIG_ADDRESS selects: a config space (and its slot, except for
    // the bridge itself), or nothing.
    struct Target {
        PciConfigSpace* config = nullptr;
        Slot* slot = nullptr;
    };
    Target selected_function();
    // Where each BAR window's free part starts: all below is taken.
    struct WindowCursors {
        uint64_t io;
        uint64_t memory;
        uint64_t memory64;
    };
    // Where `bar` goes (see the header comment); advances `next`. Throws
    // std::runtime_error, naming the BAR and the windows, when it fits nowhere.
    uint64_t allocate_bar(const PciBar& bar, WindowCursors& next) const;
    void update_bar_mappings(uint8_t device_number, Slot& slot);
    // Takes the BAR off its bus; tells `device` unless it is null.
    void unmap(uint8_t device_number, MappedBar& mapped, PciDevice* device);
    void trace_access(const char* direction, uint64_t offset, std::span<const uint8_t> data, bool found) const;

    IoBus& io_bus_;
    MmioBus& mmio_bus_;
    IrqLineFactory make_irq_line_;
    const Memory64Window memory64_window_;
    std::atomic<bool> trace_{false};

    mutable std::mutex mutex_;
    uint32_t config_address_ = 0;
    PciConfigSpace own_config_{kIdentity};
    std::array<Slot, 32> slots_;  // index = device number; slot 0 is the bridge itself
    uint8_t slots_used_ = 1;
    WindowCursors next_address_;
};

}  // namespace minikvm
