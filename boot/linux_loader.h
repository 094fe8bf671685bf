#pragma once
// Puts a Linux kernel (bzImage or ELF vmlinux), its initrd and command line
// into guest RAM and fills the zero page. Every problem with the files is a
// VmmError(BadImage) raised before any vCPU exists.

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "vmm/core/guest_memory.h"

namespace minikvm {

struct LinuxBootFiles {
    std::string kernel_path;
    std::optional<std::string> initrd_path;
    std::string command_line;
    uint64_t acpi_rsdp_address = 0;  // handed to the kernel in boot_params, 0 for none
    // An initrd built in memory (--exec's), used when initrd_path is unset.
    std::span<const uint8_t> initrd_bytes = {};
};

enum class KernelFormat { BzImage, ElfVmlinux };

struct LinuxBootInfo {
    KernelFormat format;
    uint64_t entry;  // 64-bit entry point; boot_params address goes in RSI
    uint64_t kernel_end;
    uint64_t initrd_address;
    uint64_t initrd_size;
};

LinuxBootInfo load_linux(const GuestMemory& memory, const LinuxBootFiles& files);

const char* to_string(KernelFormat format);

}  // namespace minikvm
