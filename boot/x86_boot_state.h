#pragma once
// The machine state the Linux 64-bit boot protocol asks for: long mode with
// identity-mapped paging, a flat GDT with __BOOT_CS (0x10) / __BOOT_DS (0x18),
// interrupts off, RSI -> boot_params. Plus the MSR, FPU and LAPIC defaults
// firmware would leave behind.

#include <cstdint>
#include <vector>

#include "vmm/core/guest_memory.h"
#include "vmm/core/vcpu.h"

namespace minikvm {

// Writes the GDT, an empty IDT and the page tables into guest RAM.
void write_boot_tables(const GuestMemory& memory);

// Registers and segments for the boot vCPU to enter `entry`.
void set_boot_registers(const Vcpu& vcpu, uint64_t entry);

// MSRs, FPU and LAPIC LINT pins, for every vCPU. `supported_msrs` filters the
// MSR list down to what this KVM knows.
void set_firmware_defaults(const Vcpu& vcpu, const std::vector<uint32_t>& supported_msrs);

}  // namespace minikvm
