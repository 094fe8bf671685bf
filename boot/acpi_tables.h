#pragma once
// Minimal ACPI tables (RSDP, XSDT, FADT, DSDT, MADT) so kernels built
// without MP-table support -- Debian's cloud kernel, for one -- still find
// every vCPU and the IOAPIC. The FADT points at the PM1a registers of
// devices/acpi_pm.h (so `poweroff` works through _S5) and declares no i8042
// and no VGA, so Linux skips probing hardware minikvm lacks. It is not
// "hardware-reduced": that mode drops the legacy PIC and with it the ISA
// IRQ routing the serial port needs. Kernels without ACPI use the MP table;
// both describe one machine.

#include <cstdint>
#include <vector>

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
};

// All tables as one blob for guest address `address`; the RSDP comes first.
std::vector<uint8_t> build_acpi_tables(uint64_t address, const AcpiConfig& config);

}  // namespace minikvm
