#pragma once
// Guest-virtual to guest-physical translation: a walk of the guest's own page
// tables, read through GuestMemory, for a debugger that names memory by the
// addresses the guest's code uses. The walk only reads (it sets no accessed
// or dirty bit), ignores permissions (a debugger may read and patch
// read-only kernel text), and ends with a failure, never an access outside
// guest RAM, when a table pointer leaves RAM.
//
// Paging structures and modes: Intel SDM vol. 3A, chapter 4 ("Paging"). One
// difference: PAE paging's four PDPTEs are read from memory at each walk,
// where a CPU uses the copies it loaded with CR3.

#include <cstdint>
#include <span>
#include <variant>

#include "vmm/core/guest_memory.h"

namespace minikvm {

// The control registers that choose the paging mode (as in kvm_sregs).
struct PagingRegisters {
    uint64_t cr0 = 0;
    uint64_t cr3 = 0;
    uint64_t cr4 = 0;
    uint64_t efer = 0;
};

enum class PagingMode {
    Off,     // CR0.PG clear: linear = physical, 32-bit addresses
    Bits32,  // two levels of 4-byte entries, 4 MiB pages with CR4.PSE
    Pae,     // PDPT (4 entries), directory, table; 2 MiB pages
    Level4,  // IA-32e, 48-bit addresses; 2 MiB and 1 GiB pages
    Level5,  // IA-32e with CR4.LA57, 57-bit addresses
};

PagingMode paging_mode(const PagingRegisters& registers);

enum class WalkFailure {
    NotMapped,       // a not-present entry, or beyond the mode's address width
    NonCanonical,    // IA-32e: the upper bits are not a sign extension
    TableOutsideRam, // an entry's address is not guest RAM
};

struct PageTranslation {
    uint64_t physical;     // of the translated address itself
    uint64_t page_size;    // 4 KiB, 2 MiB, 4 MiB or 1 GiB (4 KiB with paging off)
    uint64_t bytes_to_end; // from the address to the end of its page
};

std::variant<PageTranslation, WalkFailure> translate_virtual(const GuestMemory& memory,
                                                             const PagingRegisters& registers, uint64_t address);

// Copies between guest-virtual memory and `data`, page by page; stops at the
// first byte that is unmapped or not RAM. Returns the bytes copied.
size_t read_virtual(const GuestMemory& memory, const PagingRegisters& registers, uint64_t address,
                    std::span<uint8_t> data);
size_t write_virtual(const GuestMemory& memory, const PagingRegisters& registers, uint64_t address,
                     std::span<const uint8_t> data);

}  // namespace minikvm
