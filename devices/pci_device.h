#pragma once
// What a PCI device model gives the host bridge: its configuration space,
// the BARs it implements (with the BusDevice that serves each one), and a
// place to receive its INTx line. The bridge does the rest: slot, BAR
// addresses, bus mappings that follow the guest, interrupt routing.

#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "devices/irq_line.h"
#include "devices/pci_config_space.h"
#include "vmm/core/bus.h"

namespace minikvm {

// Bus/device/function: where a function sits in PCI configuration space.
struct PciBdf {
    uint8_t bus = 0;
    uint8_t device = 0;    // 0-31
    uint8_t function = 0;  // 0-7

    auto operator<=>(const PciBdf&) const = default;
    std::string to_string() const { return fmt::format("{:02x}:{:02x}.{}", bus, device, function); }
};

struct PciBar {
    unsigned index;   // 0-5: the register at config offset 0x10 + 4 * index (Memory64: 0-4, and index + 1)
    PciBarKind kind;  // Io: mapped on the IoBus; Memory32 and Memory64: on the MmioBus
    uint64_t size;    // power of two: 4..256 for I/O, 16..2 GiB for Memory32, 16..2^63 for Memory64
    BusDevice& handler;  // serves accesses; offsets are relative to the BAR's base
    bool prefetchable = false;  // memory only: bit 3 of the BAR, for the guest's mapping choices
};

class PciDevice {
public:
    virtual ~PciDevice() = default;

    virtual PciConfigSpace& config() = 0;
    // Guest accesses to configuration space (`offset` + size within 256).
    // By default config() serves them; a device that passes part of its
    // configuration space through to hardware (an assigned device)
    // overrides both and keeps config() for what it emulates, since the
    // bridge reads BARs, the command register and the interrupt registers
    // from config(). Run under the bridge's lock.
    virtual void config_read(uint32_t offset, std::span<uint8_t> data) { config().read(offset, data); }
    virtual PciConfigChanges config_write(uint32_t offset, std::span<const uint8_t> data) {
        return config().write(offset, data);
    }
    // The BARs to implement; asked once, when the device is registered.
    // The bridge declares them in config(), so the device must not.
    virtual std::vector<PciBar> bars() = 0;
    // Called once at registration with the device's INTA# line. The device
    // drives it with set_level(); the line keeps the status register's
    // interrupt bit and the command register's INTx-disable bit in step.
    virtual void connect_intx(IrqLine& intx) = 0;
    // Called after the bridge puts BAR `index` on its bus at `base`, or
    // takes it off (nullopt): for state tied to the absolute address, such as
    // an ioeventfd on a notify port. Runs under the bridge's lock, on the
    // vCPU thread whose config write caused it: do not call back into the
    // bridge. Not called when the bridge is destroyed.
    virtual void bar_mapping_changed(unsigned /*index*/, std::optional<uint64_t> /*base*/) {}
    // Called after every guest write to config(), with the bytes it
    // covered: for registers the device acts on itself (an MSI-X
    // capability's enable and mask bits). Runs under the bridge's lock, on
    // the writing vCPU's thread: do not call back into the bridge.
    virtual void config_written(uint32_t /*offset*/, uint32_t /*length*/) {}
    // Called once at registration, before connect_intx(), with the address
    // the bridge gave the device: for logs and diagnostics. Runs under the
    // bridge's lock: do not call back into the bridge.
    virtual void pci_address_assigned(PciBdf /*address*/) {}
};

}  // namespace minikvm
