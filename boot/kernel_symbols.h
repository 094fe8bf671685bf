#pragma once
// Function names for kernel addresses, from an ELF vmlinux's symbol table,
// so a hang report can say `RIP 0xffffffff81a2b3c4 (default_idle+0x14)`.
// The file is untrusted: anything malformed gives an empty table, never an
// exception or a read outside the image.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace minikvm {

class KernelSymbols {
public:
    // Bounds on what a table may hold; an image past them gives an empty
    // table rather than a partial one that could name the wrong function.
    // A large distribution vmlinux has a few hundred thousand functions.
    static constexpr size_t kMaxSymbols = 2'000'000;
    static constexpr size_t kMaxNameBytes = 64u << 20;  // all names together
    static constexpr size_t kMaxNameLength = 512;       // KSYM_NAME_LEN; longer names are cut

    // Function symbols (STT_FUNC) and the labels of executable sections
    // (STT_NOTYPE: the asm entry points such as entry_SYSCALL_64) with a
    // nonzero address, from the SHT_SYMTAB of an ELF64 little-endian x86-64
    // executable. Empty when the image is not one, has no symbol table, or
    // is malformed.
    static KernelSymbols from_elf(std::span<const uint8_t> image);

    // "name+0xOFF" for the symbol with the greatest address <= `address`,
    // when `address` lies inside it: within st_size, or for a symbol without
    // a size, before the next symbol (and before the end of its section and
    // of any sized symbol it lies in).
    std::optional<std::string> describe(uint64_t address) const;

    bool empty() const { return symbols_.empty(); }
    size_t size() const { return symbols_.size(); }

private:
    struct Symbol {
        uint64_t address;
        uint64_t end;          // first byte past the symbol; == address: covers nothing
        uint32_t name_offset;  // into names_
        uint32_t name_length;  // 0: the name was unreadable; the symbol only bounds its predecessor
    };

    std::vector<Symbol> symbols_;  // sorted by address, one per address
    std::string names_;            // every name, back to back, no separators
};

}  // namespace minikvm
