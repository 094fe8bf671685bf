#pragma once
// Minimal ACPI tables (RSDP, XSDT, FADT, DSDT, MADT) so kernels built
// without MP-table support -- Debian's cloud kernel, for one -- still find
// every vCPU and the IOAPIC. The FADT declares a hardware-reduced platform
// with no i8042 and no VGA, so Linux skips probing hardware minikvm lacks.
// Kernels without ACPI use the MP table instead; both describe one machine.

#include <cstdint>
#include <vector>

namespace minikvm {

struct AcpiConfig {
    uint32_t cpu_count = 1;
    uint8_t ioapic_id = 0;
    uint32_t sci_irq = 9;  // unused on a reduced-hardware platform, but must not be IRQ 0
};

// All tables as one blob for guest address `address`; the RSDP comes first.
std::vector<uint8_t> build_acpi_tables(uint64_t address, const AcpiConfig& config);

}  // namespace minikvm
