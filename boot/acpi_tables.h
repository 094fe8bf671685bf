#pragma once
// Minimal ACPI tables (RSDP, XSDT, FADT, DSDT, MADT) so kernels built
// without MP-table support -- Debian's cloud kernel, for one -- still find
// every vCPU and the IOAPIC. The FADT points at the PM1a registers of
// devices/acpi_pm.h (so `poweroff` works through _S5) and declares no i8042
// and no VGA, so Linux skips probing hardware minikvm lacks. It is not
// "hardware-reduced": that mode drops the legacy PIC and with it the ISA
// IRQ routing the serial port needs. Kernels without ACPI use the MP table;
// both describe one machine.
//
// The DSDT holds \_S5 and the PCI root bridge \_SB.PCI0: its bus, I/O and
// memory windows, below 4 GiB and above (_CRS), so Linux finds bus 0
// through ACPI, and its interrupt routing (_PRT), so Linux can wire each
// device's INTx to its GSI.
// Those GSIs get no interrupt source override in the MADT, so Linux programs
// them level-triggered and active-low, as the MP table declares them too.

#include <cstdint>
#include <vector>

#include "boot/mp_table.h"

namespace minikvm {

struct AcpiConfig {
    uint32_t cpu_count = 1;
    uint8_t ioapic_id = 0;
    uint32_t sci_irq = 9;  // never raised, but Linux reprograms it level/low: keep it off IRQ 0
    uint16_t pm1a_event_port = 0;
    uint8_t pm1a_event_length = 4;
    uint16_t pm1a_control_port = 0;
    uint8_t pm1a_control_length = 2;
    uint8_t s5_sleep_type = 5;

    // PCI bus 0 (devices/pci_host_bridge.h). The root bridge forwards every
    // I/O port but its configuration ports 0xcf8-0xcff: 0-0xcf7 (the legacy
    // devices) and [pci_io_window_start, pci_io_window_end), which must
    // cover where BARs go. Memory: [pci_memory_window_start, _end) below
    // 4 GiB, and [pci_memory64_window_start, _end) above it (equal: none).
    uint32_t pci_io_window_start = 0x0d00;
    uint32_t pci_io_window_end = 0x1'0000;
    uint32_t pci_memory_window_start = 0xc000'0000;
    uint32_t pci_memory_window_end = 0xe000'0000;
    uint64_t pci_memory64_window_start = 0;
    uint64_t pci_memory64_window_end = 0;
    std::vector<PciInterruptRoute> pci_routes;  // one _PRT entry each
    // pvpanic's I/O port (devices/pvpanic.h), described as \_SB.PEVT with
    // _HID "QEMU0001"; 0: no pvpanic device.
    uint16_t pvpanic_port = 0;
};

// All tables as one blob for guest address `address`; the RSDP comes first.
std::vector<uint8_t> build_acpi_tables(uint64_t address, const AcpiConfig& config);

}  // namespace minikvm
