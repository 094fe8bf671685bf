#include "boot/elf_kernel.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "vmm/core/error.h"

namespace minikvm {

bool looks_like_elf(std::span<const uint8_t> image) {
    return image.size() >= SELFMAG && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

ElfKernel parse_elf_kernel(std::span<const uint8_t> image) {
    if (!looks_like_elf(image)) fail(ExitCode::BadImage, "not an ELF file");
    if (image.size() < sizeof(Elf64_Ehdr)) fail(ExitCode::BadImage, "truncated ELF: header cut short");
    Elf64_Ehdr header;
    std::memcpy(&header, image.data(), sizeof(header));
    if (header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_ident[EI_DATA] != ELFDATA2LSB)
        fail(ExitCode::BadImage, "ELF kernel is not 64-bit little-endian");
    if (header.e_machine != EM_X86_64) fail(ExitCode::BadImage, "ELF kernel is not for x86-64 (e_machine {})", header.e_machine);
    if (header.e_type != ET_EXEC) fail(ExitCode::BadImage, "ELF file is not an executable (e_type {})", header.e_type);
    if (header.e_phentsize != sizeof(Elf64_Phdr) || header.e_phnum == 0)
        fail(ExitCode::BadImage, "ELF kernel has no usable program headers");
    uint64_t table_size = static_cast<uint64_t>(header.e_phnum) * sizeof(Elf64_Phdr);
    if (header.e_phoff > image.size() || table_size > image.size() - header.e_phoff)
        fail(ExitCode::BadImage, "truncated ELF: program headers past end of file");

    ElfKernel kernel{};
    kernel.entry = header.e_entry;
    kernel.lowest_address = std::numeric_limits<uint64_t>::max();
    for (unsigned i = 0; i < header.e_phnum; ++i) {
        Elf64_Phdr ph;
        std::memcpy(&ph, image.data() + header.e_phoff + i * sizeof(Elf64_Phdr), sizeof(ph));
        if (ph.p_type != PT_LOAD) continue;
        if (ph.p_offset > image.size() || ph.p_filesz > image.size() - ph.p_offset)
            fail(ExitCode::BadImage, "truncated ELF: segment {} extends past end of file", i);
        if (ph.p_filesz > ph.p_memsz) fail(ExitCode::BadImage, "ELF segment {} has filesz > memsz", i);
        if (ph.p_paddr + ph.p_memsz < ph.p_paddr) fail(ExitCode::BadImage, "ELF segment {} wraps the address space", i);
        kernel.segments.push_back({ph.p_offset, ph.p_filesz, ph.p_paddr, ph.p_memsz});
        kernel.lowest_address = std::min(kernel.lowest_address, ph.p_paddr);
        kernel.end_address = std::max(kernel.end_address, ph.p_paddr + ph.p_memsz);
    }
    if (kernel.segments.empty()) fail(ExitCode::BadImage, "ELF kernel has no PT_LOAD segment");
    return kernel;
}

}  // namespace minikvm
