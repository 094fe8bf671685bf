#include <catch2/catch.hpp>

#include "boot/bzimage.h"
#include "boot/elf_kernel.h"
#include "kernel_images.h"
#include "vmm/core/error.h"

using namespace minikvm;
using Catch::Matchers::Contains;

TEST_CASE("a valid bzImage setup header parses") {
    auto image = test_images::bzimage();
    REQUIRE(looks_like_bzimage(image));
    BzImage bz = parse_bzimage(image);
    CHECK(bz.kernel_offset == 5 * 512);
    CHECK(bz.kernel_size == 0x2000);
    CHECK(bz.init_size == 0x100000);
    CHECK(bz.cmdline_limit == 2047);
    CHECK(bz.header.version == 0x020f);
    CHECK(bz.initrd_address_max == 0x7fffffff);
}

TEST_CASE("setup_sects 0 means 4") {
    auto image = test_images::bzimage();
    image[0x1f1] = 0;
    CHECK(parse_bzimage(image).kernel_offset == 5 * 512);
}

TEST_CASE("bad bzImages are refused with a clear reason") {
    auto image = test_images::bzimage();
    SECTION("no boot flag") {
        image[0x1fe] = 0;
        CHECK_FALSE(looks_like_bzimage(image));
        CHECK_THROWS_WITH(parse_bzimage(image), Contains("not a bzImage"));
    }
    SECTION("no HdrS magic") {
        image[0x202] = 'X';
        CHECK_THROWS_WITH(parse_bzimage(image), Contains("not a bzImage"));
    }
    SECTION("protocol older than 2.06") {
        image = test_images::bzimage(0x2000, 0x0205);
        CHECK_THROWS_WITH(parse_bzimage(image), Contains("2.05 is too old"));
    }
    SECTION("protocol 2.06..2.11 has no xloadflags, so no 64-bit entry") {
        image = test_images::bzimage(0x2000, 0x020a);
        CHECK_THROWS_WITH(parse_bzimage(image), Contains("no 64-bit entry"));
    }
    SECTION("xloadflags without XLF_KERNEL_64") {
        image[0x236] = 0;
        CHECK_THROWS_WITH(parse_bzimage(image), Contains("no 64-bit entry"));
    }
    SECTION("zImage (not loaded high)") {
        image[0x211] = 0;
        CHECK_THROWS_WITH(parse_bzimage(image), Contains("zImage"));
    }
    SECTION("truncated kernel") {
        // Shrunk with erase(), not resize(): resize's growing path trips
        // GCC 12's false -Wstringop-overflow at -O3.
        image.erase(image.end() - 16, image.end());
        CHECK_THROWS_WITH(parse_bzimage(image), Contains("truncated"));
    }
    SECTION("truncated inside the setup header") {
        image.erase(image.begin() + 0x210, image.end());
        CHECK_THROWS_WITH(parse_bzimage(image), Contains("truncated"));
    }
    SECTION("errors carry the bad-image exit code") {
        image[0x236] = 0;
        try {
            parse_bzimage(image);
            FAIL("no exception");
        } catch (const VmmError& error) {
            CHECK(error.code() == ExitCode::BadImage);
        }
    }
}

TEST_CASE("a valid ELF vmlinux parses") {
    auto image = test_images::elf();
    REQUIRE(looks_like_elf(image));
    ElfKernel kernel = parse_elf_kernel(image);
    CHECK(kernel.entry == 0x1000040);
    REQUIRE(kernel.segments.size() == 1);
    CHECK(kernel.segments[0].physical_address == 0x1000000);
    CHECK(kernel.end_address == 0x1003000);
}

TEST_CASE("bad ELF kernels are refused with a clear reason") {
    auto image = test_images::elf();
    SECTION("32-bit") {
        image[EI_CLASS] = ELFCLASS32;
        CHECK_THROWS_WITH(parse_elf_kernel(image), Contains("64-bit"));
    }
    SECTION("wrong machine") {
        test_images::elf_header(image)->e_machine = EM_AARCH64;
        CHECK_THROWS_WITH(parse_elf_kernel(image), Contains("x86-64"));
    }
    SECTION("not an executable") {
        test_images::elf_header(image)->e_type = ET_DYN;
        CHECK_THROWS_WITH(parse_elf_kernel(image), Contains("not an executable"));
    }
    SECTION("no PT_LOAD") {
        test_images::program_header(image)->p_type = PT_NOTE;
        CHECK_THROWS_WITH(parse_elf_kernel(image), Contains("no PT_LOAD"));
    }
    SECTION("segment past end of file") {
        image.pop_back();
        CHECK_THROWS_WITH(parse_elf_kernel(image), Contains("truncated"));
    }
    SECTION("program headers past end of file") {
        test_images::elf_header(image)->e_phoff = image.size() - 8;
        CHECK_THROWS_WITH(parse_elf_kernel(image), Contains("truncated"));
    }
    SECTION("filesz > memsz") {
        test_images::program_header(image)->p_memsz = 0x10;
        CHECK_THROWS_WITH(parse_elf_kernel(image), Contains("filesz > memsz"));
    }
    SECTION("segment wrapping the address space") {
        test_images::program_header(image)->p_paddr = ~0ULL - 0x100;
        CHECK_THROWS_WITH(parse_elf_kernel(image), Contains("wraps"));
    }
    SECTION("header cut short") {
        image.erase(image.begin() + 20, image.end());
        CHECK_THROWS_WITH(parse_elf_kernel(image), Contains("truncated"));
    }
}
