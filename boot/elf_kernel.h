#pragma once
// An uncompressed ELF vmlinux: PT_LOAD segments go to their physical
// addresses and the entry point is e_entry (startup_64), boot_params in RSI.
// No decompressor runs, so it boots faster than a bzImage.

#include <cstdint>
#include <span>
#include <vector>

namespace minikvm {

struct ElfSegment {
    uint64_t file_offset;
    uint64_t file_size;
    uint64_t physical_address;
    uint64_t memory_size;  // >= file_size; the rest is zeroed (.bss)
};

struct ElfKernel {
    uint64_t entry;
    std::vector<ElfSegment> segments;
    uint64_t lowest_address;
    uint64_t end_address;  // first byte after the highest segment
};

bool looks_like_elf(std::span<const uint8_t> image);

// Validates an x86-64 ELF executable with at least one PT_LOAD segment whose
// contents all lie inside the file. Throws VmmError(BadImage).
ElfKernel parse_elf_kernel(std::span<const uint8_t> image);

}  // namespace minikvm
