#pragma once
// The "zero page" (struct boot_params) the kernel finds through RSI, and the
// e820 memory map inside it.

#include <asm/bootparam.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "vmm/core/guest_memory.h"

namespace minikvm {

constexpr uint32_t kE820Ram = 1;
constexpr uint32_t kE820Reserved = 2;

struct E820Entry {
    uint64_t address;
    uint64_t size;
    uint32_t type;
};

// RAM regions become usable entries, except the legacy EBDA/VGA/BIOS area
// between 639 KiB and 1 MiB; the BIOS area (with the MP table) is reserved.
std::vector<E820Entry> build_e820_map(const std::vector<MemoryRegion>& regions);

struct BootParamsInput {
    std::optional<setup_header> bzimage_header;  // absent for an ELF vmlinux
    uint64_t command_line_address = 0;
    uint32_t command_line_size = 0;  // including the NUL
    uint64_t initrd_address = 0;
    uint64_t initrd_size = 0;
    uint64_t acpi_rsdp_address = 0;  // 0: none
    std::vector<E820Entry> e820;
};

boot_params make_boot_params(const BootParamsInput& input);

}  // namespace minikvm
