#pragma once
// Synthetic kernel images for the loader tests: just enough of a bzImage
// setup header or an ELF file, with fields a test can then break.

#include <elf.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace test_images {

inline void put16(std::vector<uint8_t>& v, size_t at, uint16_t x) { std::memcpy(v.data() + at, &x, 2); }
inline void put32(std::vector<uint8_t>& v, size_t at, uint32_t x) { std::memcpy(v.data() + at, &x, 4); }

// A bzImage with 4 setup sectors and `kernel_bytes` of protected-mode kernel.
inline std::vector<uint8_t> bzimage(uint32_t kernel_bytes = 0x2000, uint16_t version = 0x020f) {
    const size_t setup = 5 * 512;
    std::vector<uint8_t> image(setup + kernel_bytes, 0);
    image[0x1f1] = 4;                        // setup_sects
    put32(image, 0x1f4, kernel_bytes / 16);  // syssize
    put16(image, 0x1fe, 0xaa55);             // boot_flag
    image[0x200] = 0xeb;                     // jump over the header...
    image[0x201] = 0x66;                     // ...to 0x268
    put32(image, 0x202, 0x53726448);         // "HdrS"
    put16(image, 0x206, version);
    image[0x211] = 0x01;                     // loadflags: LOADED_HIGH
    put32(image, 0x22c, 0x7fffffff);         // initrd_addr_max
    put32(image, 0x230, 0x200000);           // kernel_alignment
    image[0x234] = 1;                        // relocatable
    put16(image, 0x236, 0x1);                // xloadflags: XLF_KERNEL_64
    put32(image, 0x238, 2047);               // cmdline_size
    put32(image, 0x260, 0x100000);           // init_size: 1 MiB
    for (uint32_t i = 0; i < kernel_bytes; ++i) image[setup + i] = static_cast<uint8_t>(i * 7);
    return image;
}

// An x86-64 ELF executable with one PT_LOAD segment at physical `address`.
inline std::vector<uint8_t> elf(uint64_t address = 0x1000000, uint64_t file_bytes = 0x1000, uint64_t mem_bytes = 0x3000) {
    std::vector<uint8_t> image(sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr) + file_bytes, 0);
    Elf64_Ehdr header{};
    std::memcpy(header.e_ident, ELFMAG, SELFMAG);
    header.e_ident[EI_CLASS] = ELFCLASS64;
    header.e_ident[EI_DATA] = ELFDATA2LSB;
    header.e_ident[EI_VERSION] = EV_CURRENT;
    header.e_type = ET_EXEC;
    header.e_machine = EM_X86_64;
    header.e_version = EV_CURRENT;
    header.e_entry = address + 0x40;
    header.e_phoff = sizeof(Elf64_Ehdr);
    header.e_ehsize = sizeof(Elf64_Ehdr);
    header.e_phentsize = sizeof(Elf64_Phdr);
    header.e_phnum = 1;
    std::memcpy(image.data(), &header, sizeof(header));
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_offset = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);
    ph.p_vaddr = 0xffffffff80000000ULL + address;
    ph.p_paddr = address;
    ph.p_filesz = file_bytes;
    ph.p_memsz = mem_bytes;
    std::memcpy(image.data() + sizeof(Elf64_Ehdr), &ph, sizeof(ph));
    for (uint64_t i = 0; i < file_bytes; ++i) image[ph.p_offset + i] = 0xab;
    return image;
}

inline Elf64_Phdr* program_header(std::vector<uint8_t>& image) {
    return reinterpret_cast<Elf64_Phdr*>(image.data() + sizeof(Elf64_Ehdr));
}
inline Elf64_Ehdr* elf_header(std::vector<uint8_t>& image) { return reinterpret_cast<Elf64_Ehdr*>(image.data()); }

}  // namespace test_images
