#pragma once
// Where minikvm puts boot-time data in guest-physical memory. Everything
// lives in the first MiB except the kernel (loaded at 1 MiB, or at the ELF
// segments' addresses) and the initrd (at the top of low RAM).

#include <cstdint>

namespace minikvm::layout {

constexpr uint64_t kGdt = 0x500;
constexpr uint64_t kIdt = 0x520;
constexpr uint64_t kBootParams = 0x7000;      // the "zero page", pointed to by RSI
constexpr uint64_t kBootStack = 0x8ff0;       // initial RSP (the kernel sets its own)
constexpr uint64_t kPml4 = 0x9000;            // identity-mapping page tables
constexpr uint64_t kPdpt = 0xa000;
constexpr uint64_t kPageDirectories = 0xb000; // 4 pages: 4 GiB in 2 MiB pages
constexpr uint64_t kIdentityMappedBytes = 4ULL << 30;
constexpr uint64_t kCommandLine = 0x20000;
constexpr uint64_t kCommandLineMax = 0x10000;  // room reserved at kCommandLine
constexpr uint64_t kEbda = 0x9fc00;           // last KiB of base memory, reserved like a BIOS would
constexpr uint64_t kBaseMemoryEnd = 0xa0000;  // 640 KiB: VGA and BIOS area follow
constexpr uint64_t kBiosArea = 0xe0000;       // 128 KiB "BIOS ROM", where Linux scans for ACPI and MP tables
constexpr uint64_t kAcpiTables = 0xe0000;     // RSDP first: Linux scans 0xe0000-0xfffff for it
constexpr uint64_t kMpTable = 0xf0000;
constexpr uint64_t kHighMemory = 0x100000;    // 1 MiB: bzImage protected-mode kernel
constexpr uint64_t kBiosAreaEnd = 0x100000;

}  // namespace minikvm::layout
