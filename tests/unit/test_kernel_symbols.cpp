#include <elf.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "boot/kernel_symbols.h"
#include "kernel_images.h"

using namespace minikvm;

namespace {

constexpr uint64_t kText = 0xffffffff81000000ULL;      // .text, 0x1000 bytes
constexpr uint64_t kData = 0xffffffff81800000ULL;      // .data, 0x1000 bytes
constexpr uint64_t kInitText = 0xffffffff82000000ULL;  // .init.text, 0x100 bytes

enum Section : uint16_t { kNull, kTextIndex, kDataIndex, kInitTextIndex, kSymtabIndex, kStrtabIndex, kSectionCount };

// A vmlinux-shaped ELF: header, symbols, strings, then the section headers
// last so that cutting the file cuts them. Section contents are never read
// by the symbolizer, so .text and friends have headers only.
struct SymbolElf {
    std::vector<uint8_t> bytes;
    size_t symbols_at = 0;
    size_t strtab_at = 0;
    size_t sections_at = 0;
    std::vector<std::string> names;  // by symbol index

    Elf64_Ehdr* header() { return reinterpret_cast<Elf64_Ehdr*>(bytes.data()); }
    Elf64_Shdr* section(size_t i) { return reinterpret_cast<Elf64_Shdr*>(bytes.data() + sections_at) + i; }
    Elf64_Sym* symbol(size_t i) { return reinterpret_cast<Elf64_Sym*>(bytes.data() + symbols_at) + i; }
    size_t symbol_index(const std::string& name) const {
        for (size_t i = 0; i < names.size(); ++i)
            if (names[i] == name) return i;
        FAIL("no symbol " << name);
        return 0;
    }
    KernelSymbols table() const { return KernelSymbols::from_elf(bytes); }
};

struct SymbolSpec {
    std::string name;
    uint64_t value;
    uint64_t size;
    unsigned type;
    unsigned binding;
    uint16_t section;
};

SymbolElf build(const std::vector<SymbolSpec>& specs) {
    SymbolElf elf;
    std::vector<Elf64_Sym> symbols(1);  // index 0: the null symbol
    std::string strtab(1, '\0');
    elf.names.push_back("");
    for (const auto& s : specs) {
        Elf64_Sym sym{};
        sym.st_name = static_cast<uint32_t>(strtab.size());
        sym.st_info = static_cast<unsigned char>(ELF64_ST_INFO(s.binding, s.type));
        sym.st_shndx = s.section;
        sym.st_value = s.value;
        sym.st_size = s.size;
        symbols.push_back(sym);
        strtab += s.name;
        strtab += '\0';
        elf.names.push_back(s.name);
    }
    elf.symbols_at = sizeof(Elf64_Ehdr);
    elf.strtab_at = elf.symbols_at + symbols.size() * sizeof(Elf64_Sym);
    elf.sections_at = (elf.strtab_at + strtab.size() + 7) & ~size_t{7};
    elf.bytes.assign(elf.sections_at + kSectionCount * sizeof(Elf64_Shdr), 0);
    std::memcpy(elf.bytes.data() + elf.symbols_at, symbols.data(), symbols.size() * sizeof(Elf64_Sym));
    std::memcpy(elf.bytes.data() + elf.strtab_at, strtab.data(), strtab.size());

    Elf64_Ehdr* h = elf.header();
    std::memcpy(h->e_ident, ELFMAG, SELFMAG);
    h->e_ident[EI_CLASS] = ELFCLASS64;
    h->e_ident[EI_DATA] = ELFDATA2LSB;
    h->e_ident[EI_VERSION] = EV_CURRENT;
    h->e_type = ET_EXEC;
    h->e_machine = EM_X86_64;
    h->e_version = EV_CURRENT;
    h->e_ehsize = sizeof(Elf64_Ehdr);
    h->e_shoff = elf.sections_at;
    h->e_shentsize = sizeof(Elf64_Shdr);
    h->e_shnum = kSectionCount;

    auto code = [](Elf64_Shdr* s, uint64_t address, uint64_t size) {
        s->sh_type = SHT_PROGBITS;
        s->sh_flags = SHF_ALLOC | SHF_EXECINSTR;
        s->sh_addr = address;
        s->sh_size = size;
    };
    code(elf.section(kTextIndex), kText, 0x1000);
    code(elf.section(kInitTextIndex), kInitText, 0x100);
    Elf64_Shdr* data = elf.section(kDataIndex);
    data->sh_type = SHT_PROGBITS;
    data->sh_flags = SHF_ALLOC | SHF_WRITE;
    data->sh_addr = kData;
    data->sh_size = 0x1000;
    Elf64_Shdr* symtab = elf.section(kSymtabIndex);
    symtab->sh_type = SHT_SYMTAB;
    symtab->sh_offset = elf.symbols_at;
    symtab->sh_size = symbols.size() * sizeof(Elf64_Sym);
    symtab->sh_entsize = sizeof(Elf64_Sym);
    symtab->sh_link = kStrtabIndex;
    symtab->sh_info = 1;
    Elf64_Shdr* strings = elf.section(kStrtabIndex);
    strings->sh_type = SHT_STRTAB;
    strings->sh_offset = elf.strtab_at;
    strings->sh_size = strtab.size();
    return elf;
}

// Shaped like what a real vmlinux holds around its idle loop and entry code.
SymbolElf vmlinux_like() {
    return build({
        {"_text", kText, 0, STT_NOTYPE, STB_GLOBAL, kTextIndex},
        {"startup_64", kText, 0x60, STT_NOTYPE, STB_GLOBAL, kTextIndex},
        {"_stext", kText, 0, STT_NOTYPE, STB_GLOBAL, kTextIndex},
        {"native_safe_halt", kText + 0x80, 0x10, STT_FUNC, STB_LOCAL, kTextIndex},
        {"default_idle", kText + 0x100, 0x20, STT_FUNC, STB_GLOBAL, kTextIndex},
        {"entry_SYSCALL_64", kText + 0x200, 0, STT_NOTYPE, STB_GLOBAL, kTextIndex},
        {"do_syscall_64", kText + 0x300, 0x40, STT_FUNC, STB_GLOBAL, kTextIndex},
        {"entry_SYSCALL_64_after_hwframe", kText + 0x220, 0, STT_NOTYPE, STB_GLOBAL, kTextIndex},
        {"entry_SYSCALL_64_end", kText + 0x2f0, 0, STT_NOTYPE, STB_GLOBAL, kTextIndex},
        {"asm_exc_page_fault", kText + 0x400, 0x30, STT_NOTYPE, STB_GLOBAL, kTextIndex},
        {"asm_exc_page_fault_end", kText + 0x42f, 0, STT_NOTYPE, STB_GLOBAL, kTextIndex},
        {"_etext", kText + 0x1000, 0, STT_NOTYPE, STB_GLOBAL, kTextIndex},
        {"jiffies", kData + 0x40, 8, STT_OBJECT, STB_GLOBAL, kDataIndex},
        {"__data_label", kData + 0x80, 0, STT_NOTYPE, STB_GLOBAL, kDataIndex},
        {"zero_function", 0, 0x10, STT_FUNC, STB_GLOBAL, kTextIndex},
        {"printk", kText + 0x500, 0, STT_FUNC, STB_GLOBAL, SHN_UNDEF},
        {"vmlinux.c", 0, 0, STT_FILE, STB_LOCAL, SHN_ABS},
        {"init_label", kInitText, 0, STT_NOTYPE, STB_LOCAL, kInitTextIndex},
    });
}

}  // namespace

TEST_CASE("kernel symbols: functions and code labels by address", "[kernel-symbols]") {
    const auto symbols = vmlinux_like().table();
    // startup_64 (_text and _stext alias it), native_safe_halt, default_idle,
    // entry_SYSCALL_64 and its two labels, do_syscall_64, asm_exc_page_fault
    // and its end label, _etext, init_label.
    CHECK(symbols.size() == 11);
    CHECK_FALSE(symbols.empty());

    CHECK(symbols.describe(kText + 0x114) == "default_idle+0x14");
    CHECK(symbols.describe(kText + 0x100) == "default_idle+0x0");
    CHECK(symbols.describe(kText + 0x11f) == "default_idle+0x1f");
    CHECK(symbols.describe(kText + 0x8f) == "native_safe_halt+0xf");

    SECTION("past a sized symbol's end: nothing, even before the next symbol") {
        CHECK(symbols.describe(kText + 0x120) == std::nullopt);
        CHECK(symbols.describe(kText + 0x90) == std::nullopt);
        CHECK(symbols.describe(kText + 0x340) == std::nullopt);
    }
    SECTION("below the first symbol") {
        CHECK(symbols.describe(kText - 1) == std::nullopt);
        CHECK(symbols.describe(0) == std::nullopt);
        CHECK(symbols.describe(0x1000000) == std::nullopt);
    }
    SECTION("a label without a size runs to the next symbol") {
        CHECK(symbols.describe(kText + 0x200) == "entry_SYSCALL_64+0x0");
        CHECK(symbols.describe(kText + 0x21f) == "entry_SYSCALL_64+0x1f");
        CHECK(symbols.describe(kText + 0x220) == "entry_SYSCALL_64_after_hwframe+0x0");
        CHECK(symbols.describe(kText + 0x2ef) == "entry_SYSCALL_64_after_hwframe+0xcf");
        CHECK(symbols.describe(kText + 0x2ff) == "entry_SYSCALL_64_end+0xf");
        CHECK(symbols.describe(kText + 0x300) == "do_syscall_64+0x0");
    }
    SECTION("...and no further than the sized symbol it lies in") {
        CHECK(symbols.describe(kText + 0x410) == "asm_exc_page_fault+0x10");
        CHECK(symbols.describe(kText + 0x42f) == "asm_exc_page_fault_end+0x0");
        CHECK(symbols.describe(kText + 0x430) == std::nullopt);  // padding, not the label
    }
    SECTION("...and no further than its section's end") {
        CHECK(symbols.describe(kInitText + 0xff) == "init_label+0xff");
        CHECK(symbols.describe(kInitText + 0x100) == std::nullopt);
        CHECK(symbols.describe(~0ULL) == std::nullopt);
        CHECK(symbols.describe(kText + 0x1000) == std::nullopt);  // _etext ends .text
    }
    SECTION("among aliases the sized symbol names the address") {
        CHECK(symbols.describe(kText) == "startup_64+0x0");
        CHECK(symbols.describe(kText + 0x5f) == "startup_64+0x5f");
        CHECK(symbols.describe(kText + 0x60) == std::nullopt);
    }
    SECTION("data, undefined, zero-address and file symbols are left out") {
        CHECK(symbols.describe(kData + 0x40) == std::nullopt);
        CHECK(symbols.describe(kData + 0x80) == std::nullopt);
        CHECK(symbols.describe(kText + 0x500) == std::nullopt);
    }
}

TEST_CASE("kernel symbols: the order in the file does not matter", "[kernel-symbols]") {
    auto symbols = build({
                             {"b", kText + 0x200, 0x10, STT_FUNC, STB_GLOBAL, kTextIndex},
                             {"alias_weak", kText + 0x100, 0x10, STT_FUNC, STB_WEAK, kTextIndex},
                             {"a", kText + 0x100, 0x10, STT_FUNC, STB_GLOBAL, kTextIndex},
                             {"alias_local", kText + 0x100, 0x10, STT_FUNC, STB_LOCAL, kTextIndex},
                         })
                       .table();
    CHECK(symbols.size() == 2);
    CHECK(symbols.describe(kText + 0x104) == "a+0x4");
    CHECK(symbols.describe(kText + 0x204) == "b+0x4");
}

TEST_CASE("kernel symbols: not an ELF symbol table gives an empty table", "[kernel-symbols]") {
    auto check_empty = [](std::span<const uint8_t> image) {
        const auto symbols = KernelSymbols::from_elf(image);
        CHECK(symbols.empty());
        CHECK(symbols.size() == 0);
        CHECK(symbols.describe(kText + 0x114) == std::nullopt);
    };
    SECTION("nothing") { check_empty({}); }
    SECTION("text") {
        const std::string text = "not a kernel at all, just some words that are long enough to be a header";
        check_empty(std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    }
    SECTION("a bzImage") { check_empty(test_images::bzimage()); }
    SECTION("an ELF kernel without section headers") { check_empty(test_images::elf()); }
    SECTION("the ELF magic alone") {
        std::vector<uint8_t> magic(ELFMAG, ELFMAG + SELFMAG);
        check_empty(magic);
    }

    auto elf = vmlinux_like();
    REQUIRE_FALSE(elf.table().empty());
    SECTION("32-bit") {
        elf.header()->e_ident[EI_CLASS] = ELFCLASS32;
        check_empty(elf.bytes);
    }
    SECTION("big-endian") {
        elf.header()->e_ident[EI_DATA] = ELFDATA2MSB;
        check_empty(elf.bytes);
    }
    SECTION("another machine") {
        elf.header()->e_machine = EM_AARCH64;
        check_empty(elf.bytes);
    }
    SECTION("a relocatable object: values are not addresses") {
        elf.header()->e_type = ET_REL;
        check_empty(elf.bytes);
    }
    SECTION("no symbol table (stripped)") {
        elf.section(kSymtabIndex)->sh_type = SHT_PROGBITS;
        check_empty(elf.bytes);
    }
    SECTION("the ELF header cut short") {
        elf.bytes.erase(elf.bytes.begin() + 40, elf.bytes.end());
        check_empty(elf.bytes);
    }
}

TEST_CASE("kernel symbols: malformed headers give an empty table", "[kernel-symbols]") {
    auto elf = vmlinux_like();
    REQUIRE(elf.table().size() == 11);
    SECTION("section headers cut short") {
        elf.bytes.pop_back();
        CHECK(elf.table().empty());
    }
    SECTION("section header offset past the end, and wrapping") {
        elf.header()->e_shoff = elf.bytes.size();
        CHECK(elf.table().empty());
        elf.header()->e_shoff = ~0ULL - 64;
        CHECK(elf.table().empty());
    }
    SECTION("section header entries of the wrong size") {
        elf.header()->e_shentsize = sizeof(Elf64_Shdr) - 8;
        CHECK(elf.table().empty());
    }
    SECTION("more section headers than the file holds") {
        elf.header()->e_shnum = 0xffff;
        CHECK(elf.table().empty());
    }
    SECTION("no section headers") {
        elf.header()->e_shnum = 0;
        CHECK(elf.table().empty());
    }
    SECTION("sh_link out of range") {
        elf.section(kSymtabIndex)->sh_link = kSectionCount;
        CHECK(elf.table().empty());
        elf.section(kSymtabIndex)->sh_link = 0xffffffff;
        CHECK(elf.table().empty());
    }
    SECTION("sh_link to a section that is not a string table") {
        elf.section(kSymtabIndex)->sh_link = kTextIndex;
        CHECK(elf.table().empty());
    }
    SECTION("symbol entries of the wrong size") {
        elf.section(kSymtabIndex)->sh_entsize = 16;
        CHECK(elf.table().empty());
        elf.section(kSymtabIndex)->sh_entsize = 0;
        CHECK(elf.table().empty());
    }
    SECTION("a symbol table that is not a whole number of entries") {
        elf.section(kSymtabIndex)->sh_size -= 1;
        CHECK(elf.table().empty());
    }
    SECTION("a symbol table past the end of the file, or a huge count") {
        elf.section(kSymtabIndex)->sh_size = elf.bytes.size();
        CHECK(elf.table().empty());
        elf.section(kSymtabIndex)->sh_size = (~0ULL / sizeof(Elf64_Sym)) * sizeof(Elf64_Sym);
        CHECK(elf.table().empty());
        elf.section(kSymtabIndex)->sh_size = 2 * sizeof(Elf64_Sym);
        elf.section(kSymtabIndex)->sh_offset = ~0ULL - sizeof(Elf64_Sym);  // offset + size wraps
        CHECK(elf.table().empty());
    }
    SECTION("a string table past the end of the file") {
        elf.section(kStrtabIndex)->sh_size = elf.bytes.size();
        CHECK(elf.table().empty());
        elf.section(kStrtabIndex)->sh_offset = ~0ULL;
        elf.section(kStrtabIndex)->sh_size = 2;
        CHECK(elf.table().empty());
    }
}

TEST_CASE("kernel symbols: bad names lose the name, not the table", "[kernel-symbols]") {
    auto elf = vmlinux_like();
    SECTION("a string offset past the string table") {
        elf.symbol(elf.symbol_index("default_idle"))->st_name = static_cast<uint32_t>(elf.section(kStrtabIndex)->sh_size);
        elf.symbol(elf.symbol_index("native_safe_halt"))->st_name = 0xffffffff;
        const auto symbols = elf.table();
        CHECK(symbols.size() == 11);
        CHECK(symbols.describe(kText + 0x114) == std::nullopt);
        CHECK(symbols.describe(kText + 0x84) == std::nullopt);
        CHECK(symbols.describe(kText + 0x304) == "do_syscall_64+0x4");
    }
    SECTION("an unterminated string table: the last name runs off its end") {
        // Drop the final NUL: init_label, the last name, is left unterminated.
        elf.section(kStrtabIndex)->sh_size -= 1;
        const auto symbols = elf.table();
        CHECK(symbols.describe(kInitText + 4) == std::nullopt);
        CHECK(symbols.describe(kText + 0x114) == "default_idle+0x14");
        // Cut into the middle of it, too.
        elf.section(kStrtabIndex)->sh_size -= 3;
        CHECK(elf.table().describe(kInitText + 4) == std::nullopt);
    }
    SECTION("an empty string table") {
        elf.section(kStrtabIndex)->sh_size = 0;
        const auto symbols = elf.table();
        CHECK(symbols.size() == 11);
        CHECK(symbols.describe(kText + 0x114) == std::nullopt);
    }
    SECTION("an unnamed label still ends the label before it") {
        elf.symbol(elf.symbol_index("do_syscall_64"))->st_name = 0;  // the empty name
        const auto symbols = elf.table();
        CHECK(symbols.describe(kText + 0x2ff) == "entry_SYSCALL_64_end+0xf");
        CHECK(symbols.describe(kText + 0x300) == std::nullopt);
    }
    SECTION("a named alias wins over an unnamed one") {
        elf.symbol(elf.symbol_index("startup_64"))->st_name = 0xfffffff0;
        CHECK(elf.table().describe(kText + 4) == "_stext+0x4");
    }
    SECTION("a symbol in a section that does not exist") {
        elf.symbol(elf.symbol_index("entry_SYSCALL_64"))->st_shndx = 0x7000;  // NOTYPE: dropped
        elf.symbol(elf.symbol_index("default_idle"))->st_shndx = 0x7000;      // FUNC: kept
        const auto symbols = elf.table();
        CHECK(symbols.describe(kText + 0x200) == std::nullopt);
        CHECK(symbols.describe(kText + 0x114) == "default_idle+0x14");
    }
    SECTION("a size that wraps the address space") {
        elf.symbol(elf.symbol_index("do_syscall_64"))->st_size = ~0ULL;
        const auto symbols = elf.table();
        CHECK(symbols.describe(kText + 0x3ff) == "do_syscall_64+0xff");
        CHECK(symbols.describe(kText + 0x1000) == std::nullopt);  // _etext, the next symbol, takes over
    }
}

TEST_CASE("kernel symbols: a very long name is cut", "[kernel-symbols]") {
    const std::string long_name(3000, 'x');
    const auto symbols = build({{long_name, kText, 0x10, STT_FUNC, STB_GLOBAL, kTextIndex}}).table();
    CHECK(symbols.describe(kText + 1) == long_name.substr(0, KernelSymbols::kMaxNameLength) + "+0x1");
}
