// libFuzzer target: the kernel symbolizer (boot/kernel_symbols.h) reading a
// vmlinux it cannot trust. The first byte picks the shape, modulo 3:
//   0: the rest is the whole file;
//   1: the rest is symbols and strings wrapped in a valid ELF header and
//      section headers (.text, .data, .symtab, .strtab), after up to 7 byte
//      patches into those headers;
//   2: the rest is 6-byte records that become well-formed symbols with
//      names from a small table (and some broken ones), so the run spends
//      its time sorting, choosing among aliases and describing.
// describe() runs on addresses from the input and around every symbol; a
// described address must name a symbol whose own start is described as that
// symbol at offset 0.

#include <elf.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "boot/kernel_symbols.h"

using namespace minikvm;

namespace {

constexpr uint64_t kText = 0xffffffff81000000ULL;
constexpr size_t kSections = 5;
constexpr size_t kHeaders = sizeof(Elf64_Ehdr) + kSections * sizeof(Elf64_Shdr);

Elf64_Shdr section(uint32_t type, uint64_t flags, uint64_t address, uint64_t offset, uint64_t size, uint32_t link = 0,
                   uint64_t entsize = 0) {
    Elf64_Shdr s{};
    s.sh_type = type;
    s.sh_flags = flags;
    s.sh_addr = address;
    s.sh_offset = offset;
    s.sh_size = size;
    s.sh_link = link;
    s.sh_entsize = entsize;
    return s;
}

// Headers, then the symbols, then the strings; patches are (offset, value)
// triples applied to the headers.
std::vector<uint8_t> assemble(std::span<const uint8_t> patches, std::span<const uint8_t> symbols,
                              std::span<const uint8_t> strings) {
    std::vector<uint8_t> image(kHeaders + symbols.size() + strings.size(), 0);
    Elf64_Ehdr h{};
    std::memcpy(h.e_ident, ELFMAG, SELFMAG);
    h.e_ident[EI_CLASS] = ELFCLASS64;
    h.e_ident[EI_DATA] = ELFDATA2LSB;
    h.e_type = ET_EXEC;
    h.e_machine = EM_X86_64;
    h.e_shoff = sizeof(Elf64_Ehdr);
    h.e_shentsize = sizeof(Elf64_Shdr);
    h.e_shnum = kSections;
    std::memcpy(image.data(), &h, sizeof(h));
    const Elf64_Shdr s[kSections] = {
        {},
        section(SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, kText, 0, 0x10000),
        section(SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, kText + 0x10000, 0, 0x10000),
        section(SHT_SYMTAB, 0, 0, kHeaders, symbols.size(), 4, sizeof(Elf64_Sym)),
        section(SHT_STRTAB, 0, 0, kHeaders + symbols.size(), strings.size()),
    };
    std::memcpy(image.data() + sizeof(Elf64_Ehdr), s, sizeof(s));
    if (!symbols.empty()) std::memcpy(image.data() + kHeaders, symbols.data(), symbols.size());
    if (!strings.empty()) std::memcpy(image.data() + kHeaders + symbols.size(), strings.data(), strings.size());
    for (size_t i = 0; i + 3 <= patches.size(); i += 3)
        image[(patches[i] | patches[i + 1] << 8) % kHeaders] = patches[i + 2];
    return image;
}

std::vector<uint8_t> wrap(std::span<const uint8_t> in) {
    if (in.empty()) return {};
    const size_t patches = std::min<size_t>(in[0] & 7, (in.size() - 1) / 3);
    const auto patch_bytes = in.subspan(1, patches * 3);
    auto rest = in.subspan(1 + patches * 3);
    // Two bytes split the rest into symbols and strings.
    size_t symbol_bytes = 0;
    if (rest.size() >= 2) {
        symbol_bytes = std::min<size_t>(rest[0] | rest[1] << 8, rest.size() - 2);
        rest = rest.subspan(2);
    }
    return assemble(patch_bytes, rest.first(symbol_bytes), rest.subspan(symbol_bytes));
}

// Records: offset (2 bytes, from .text), size, kind (bits 0-1: FUNC, NOTYPE,
// OBJECT, FILE; bits 2-3: section 0..3; bits 4-5: binding), name (one of 16,
// the empty name, or past the table). A last odd byte with bit 0 set drops
// the strings' final NUL.
std::vector<uint8_t> generate(std::span<const uint8_t> in) {
    std::string strings(1, '\0');
    uint32_t name_at[16];
    for (int i = 0; i < 16; ++i) {
        name_at[i] = static_cast<uint32_t>(strings.size());
        strings += "fn" + std::to_string(i * 37) + '\0';
    }
    static constexpr unsigned kTypes[] = {STT_FUNC, STT_NOTYPE, STT_OBJECT, STT_FILE};
    std::vector<uint8_t> symbols(sizeof(Elf64_Sym), 0);  // the null symbol
    for (size_t at = 0; at + 6 <= in.size(); at += 6) {
        Elf64_Sym sym{};
        sym.st_value = kText + (in[at] | in[at + 1] << 8);
        sym.st_size = in[at + 2];
        const uint8_t kind = in[at + 3];
        sym.st_info = static_cast<unsigned char>(ELF64_ST_INFO((kind >> 4) & 3, kTypes[kind & 3]));
        sym.st_shndx = (kind >> 2) & 3;
        const uint8_t name = in[at + 4] % 18;
        sym.st_name = name < 16 ? name_at[name] : name == 16 ? 0 : static_cast<uint32_t>(strings.size() + in[at + 5]);
        const auto* bytes = reinterpret_cast<const uint8_t*>(&sym);
        symbols.insert(symbols.end(), bytes, bytes + sizeof(sym));
    }
    if (in.size() % 6 != 0 && (in.back() & 1)) strings.pop_back();
    return assemble({}, symbols, std::span(reinterpret_cast<const uint8_t*>(strings.data()), strings.size()));
}

void check(const KernelSymbols& table, uint64_t address) {
    const auto name = table.describe(address);
    if (!name) return;
    const size_t plus = name->rfind("+0x");
    if (plus == std::string::npos || plus == 0 || plus > KernelSymbols::kMaxNameLength) std::abort();
    const uint64_t offset = std::strtoull(name->c_str() + plus + 3, nullptr, 16);
    if (offset > address) std::abort();
    if (table.describe(address - offset) != name->substr(0, plus) + "+0x0") std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const std::span<const uint8_t> in(data + 1, size - 1);
    const unsigned mode = data[0] % 3;
    std::vector<uint8_t> built;
    std::span<const uint8_t> image = in;
    if (mode != 0) {
        built = mode == 1 ? wrap(in) : generate(in);
        image = built;
    }
    const KernelSymbols table = KernelSymbols::from_elf(image);
    if (table.empty() != (table.size() == 0) || table.size() > KernelSymbols::kMaxSymbols) std::abort();

    // Around every symbol the image's own table holds (when it is where the
    // built shapes put it): start, last byte, end, and the bytes beside.
    if (mode != 0 && image.size() >= kHeaders) {
        Elf64_Shdr symtab;
        std::memcpy(&symtab, image.data() + sizeof(Elf64_Ehdr) + 3 * sizeof(Elf64_Shdr), sizeof(symtab));
        const uint64_t end = std::min<uint64_t>(image.size(), kHeaders + std::min<uint64_t>(symtab.sh_size, 1u << 16));
        for (uint64_t at = kHeaders; at + sizeof(Elf64_Sym) <= end; at += sizeof(Elf64_Sym)) {
            Elf64_Sym sym;
            std::memcpy(&sym, image.data() + at, sizeof(sym));
            for (uint64_t address : {sym.st_value, sym.st_value + sym.st_size}) {
                check(table, address - 1);
                check(table, address);
                check(table, address + 1);
            }
        }
    }
    // Any 8 bytes of the input as an address.
    for (size_t at = 0; at + 8 <= in.size() && at < 512; ++at) {
        uint64_t address;
        std::memcpy(&address, in.data() + at, sizeof(address));
        check(table, address);
    }
    check(table, 0);
    check(table, ~0ULL);
    check(table, kText);
    return 0;
}
