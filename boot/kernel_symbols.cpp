#include "boot/kernel_symbols.h"

#include <elf.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>
#include <string_view>

namespace minikvm {

namespace {

constexpr uint64_t kNoEnd = std::numeric_limits<uint64_t>::max();

// [offset, offset + length) inside `size` bytes, without overflowing.
bool inside(uint64_t size, uint64_t offset, uint64_t length) { return offset <= size && length <= size - offset; }

// An unaligned read; the caller has checked the bounds.
template <typename T>
T read_at(std::span<const uint8_t> image, uint64_t offset) {
    T value;
    std::memcpy(&value, image.data() + offset, sizeof(T));
    return value;
}

uint64_t saturating_add(uint64_t a, uint64_t b) { return b > kNoEnd - a ? kNoEnd : a + b; }

// A symbol before several at one address are narrowed to one.
struct Candidate {
    uint64_t address;
    uint64_t end;          // for a symbol without a size: its section's end, or kNoEnd
    uint32_t name_offset;  // into the string table
    uint32_t name_length;  // 0: unreadable
    bool sized;
    uint8_t rank;  // at one address the lowest rank names it
};

// Aliases share addresses (_text, _stext and startup_64). Prefer a readable
// name, then a sized symbol (the real code over a marker label), then a
// function, then a global.
uint8_t rank_of(bool named, bool sized, unsigned type, unsigned binding) {
    return static_cast<uint8_t>((named ? 0 : 8) | (sized ? 0 : 4) | (type == STT_FUNC ? 0 : 2) |
                                (binding == STB_GLOBAL ? 0 : 1));
}

// The name at `offset`, which must end with a NUL inside the table; cut at
// kMaxNameLength. Length 0 when it cannot be read or is empty.
uint32_t name_length(std::span<const uint8_t> strtab, uint32_t offset) {
    if (offset >= strtab.size()) return 0;
    const void* nul = std::memchr(strtab.data() + offset, 0, strtab.size() - offset);
    if (nul == nullptr) return 0;  // runs off an unterminated table
    const size_t length = static_cast<const uint8_t*>(nul) - (strtab.data() + offset);
    return static_cast<uint32_t>(std::min(length, KernelSymbols::kMaxNameLength));
}

}  // namespace

KernelSymbols KernelSymbols::from_elf(std::span<const uint8_t> image) {
    // The caps bound every allocation, but a hang report must not die of a
    // symbol table: out of memory is just no symbols.
    try {
        KernelSymbols table;
        if (image.size() < sizeof(Elf64_Ehdr) || std::memcmp(image.data(), ELFMAG, SELFMAG) != 0) return table;
        const auto header = read_at<Elf64_Ehdr>(image, 0);
        if (header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_ident[EI_DATA] != ELFDATA2LSB ||
            header.e_machine != EM_X86_64 || (header.e_type != ET_EXEC && header.e_type != ET_DYN))
            return table;
        // e_shnum 0 with sections means extended numbering (>= 0xff00
        // sections); no linked vmlinux has that many, so it is not read.
        if (header.e_shentsize != sizeof(Elf64_Shdr) || header.e_shnum == 0) return table;
        const uint64_t section_count = header.e_shnum;
        if (!inside(image.size(), header.e_shoff, section_count * sizeof(Elf64_Shdr))) return table;
        std::vector<Elf64_Shdr> sections(section_count);
        for (uint64_t i = 0; i < section_count; ++i)
            sections[i] = read_at<Elf64_Shdr>(image, header.e_shoff + i * sizeof(Elf64_Shdr));

        // ELF allows one SHT_SYMTAB; its strings are in section sh_link.
        const auto symtab = std::find_if(sections.begin(), sections.end(),
                                         [](const Elf64_Shdr& s) { return s.sh_type == SHT_SYMTAB; });
        if (symtab == sections.end()) return table;
        if (symtab->sh_entsize != sizeof(Elf64_Sym) || symtab->sh_size % sizeof(Elf64_Sym) != 0 ||
            !inside(image.size(), symtab->sh_offset, symtab->sh_size) || symtab->sh_link >= section_count)
            return table;
        const Elf64_Shdr& strtab_header = sections[symtab->sh_link];
        if (strtab_header.sh_type != SHT_STRTAB || !inside(image.size(), strtab_header.sh_offset, strtab_header.sh_size))
            return table;
        const auto strtab = image.subspan(strtab_header.sh_offset, strtab_header.sh_size);

        std::vector<Candidate> candidates;
        const uint64_t symbol_count = symtab->sh_size / sizeof(Elf64_Sym);
        for (uint64_t i = 0; i < symbol_count; ++i) {
            const auto sym = read_at<Elf64_Sym>(image, symtab->sh_offset + i * sizeof(Elf64_Sym));
            const unsigned type = ELF64_ST_TYPE(sym.st_info);
            if (sym.st_value == 0 || sym.st_shndx == SHN_UNDEF) continue;
            // Reserved indexes (SHN_ABS, SHN_COMMON, SHN_XINDEX) name no section header.
            const Elf64_Shdr* section =
                sym.st_shndx < SHN_LORESERVE && sym.st_shndx < section_count ? &sections[sym.st_shndx] : nullptr;
            const bool executable = section != nullptr && (section->sh_flags & SHF_EXECINSTR) != 0;
            // Linux's asm entry points (entry_SYSCALL_64, asm_exc_*) are NOTYPE labels in .text.
            if (type != STT_FUNC && !(type == STT_NOTYPE && executable)) continue;
            if (candidates.size() == kMaxSymbols) return table;  // past the cap: nothing, not a partial table

            Candidate c{};
            c.address = sym.st_value;
            c.sized = sym.st_size != 0;
            c.name_offset = sym.st_name;
            c.name_length = name_length(strtab, sym.st_name);
            if (c.sized) {
                c.end = saturating_add(sym.st_value, sym.st_size);
            } else {
                // A label with no size ends no later than its section (_etext
                // at the end of .text covers nothing).
                c.end = kNoEnd;
                if (section != nullptr && (section->sh_flags & SHF_ALLOC) != 0 && sym.st_value >= section->sh_addr &&
                    sym.st_value - section->sh_addr <= section->sh_size)
                    c.end = saturating_add(sym.st_value, section->sh_size - (sym.st_value - section->sh_addr));
            }
            c.rank = rank_of(c.name_length != 0, c.sized, type, ELF64_ST_BIND(sym.st_info));
            candidates.push_back(c);
        }

        const auto name = [&](const Candidate& c) {
            return std::string_view(reinterpret_cast<const char*>(strtab.data()) + c.name_offset, c.name_length);
        };
        // The name as the last key makes the choice among equals independent of symbol order.
        std::sort(candidates.begin(), candidates.end(), [&](const Candidate& a, const Candidate& b) {
            if (a.address != b.address) return a.address < b.address;
            if (a.rank != b.rank) return a.rank < b.rank;
            return name(a) < name(b);
        });
        candidates.erase(std::unique(candidates.begin(), candidates.end(),
                                     [](const Candidate& a, const Candidate& b) { return a.address == b.address; }),
                         candidates.end());

        uint64_t name_bytes = 0;
        for (const Candidate& c : candidates) name_bytes += c.name_length;
        if (name_bytes > kMaxNameBytes) return table;
        table.names_.reserve(name_bytes);
        table.symbols_.reserve(candidates.size());
        uint64_t sized_reach = 0;  // the furthest end of the sized symbols so far
        for (size_t i = 0; i < candidates.size(); ++i) {
            const Candidate& c = candidates[i];
            uint64_t end = c.end;
            if (c.sized) {
                sized_reach = std::max(sized_reach, c.end);
            } else {
                // Up to the next symbol; the last one, unbounded, covers nothing.
                if (i + 1 < candidates.size()) end = std::min(end, candidates[i + 1].address);
                // A label inside a sized symbol (entry_SYSRETQ_end inside
                // entry_SYSCALL_64) ends with it, not in the padding after.
                if (c.address < sized_reach) end = std::min(end, sized_reach);
                if (end == kNoEnd) end = c.address;
            }
            table.symbols_.push_back({c.address, end, static_cast<uint32_t>(table.names_.size()), c.name_length});
            table.names_.append(name(c));
        }
        return table;
    } catch (const std::bad_alloc&) {
        return KernelSymbols();
    }
}

std::optional<std::string> KernelSymbols::describe(uint64_t address) const {
    auto it = std::upper_bound(symbols_.begin(), symbols_.end(), address,
                               [](uint64_t a, const Symbol& s) { return a < s.address; });
    if (it == symbols_.begin()) return std::nullopt;
    --it;
    if (address >= it->end || it->name_length == 0) return std::nullopt;
    return fmt::format("{}+{:#x}", std::string_view(names_).substr(it->name_offset, it->name_length),
                       address - it->address);
}

}  // namespace minikvm
