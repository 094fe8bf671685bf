#include <catch2/catch.hpp>

#include <asm/bootparam.h>

#include <cstring>

#include "boot/boot_params.h"
#include "boot/linux_loader.h"
#include "boot/memory_layout.h"
#include "kernel_images.h"
#include "temp_file.h"
#include "vmm/core/error.h"

using namespace minikvm;
using Catch::Matchers::Contains;

namespace {
constexpr uint64_t kMiB = 1ULL << 20;

boot_params read_boot_params(const GuestMemory& memory) {
    boot_params params;
    REQUIRE(memory.read(layout::kBootParams, std::span(reinterpret_cast<uint8_t*>(&params), sizeof(params))));
    return params;
}

std::string read_string(const GuestMemory& memory, uint64_t address) {
    std::string s;
    uint8_t c = 0;
    while (memory.read(address++, std::span(&c, 1)) && c != 0) s += static_cast<char>(c);
    return s;
}
}  // namespace

TEST_CASE("a bzImage is loaded at 1 MiB with a filled zero page") {
    GuestMemory memory = GuestMemory::allocate(64 * kMiB);
    TempFile kernel(test_images::bzimage());
    TempFile initrd(std::vector<uint8_t>(10000, 0x42));
    LinuxBootInfo info = load_linux(memory, {kernel.path(), initrd.path(), "console=ttyS0 quiet"});

    CHECK(info.format == KernelFormat::BzImage);
    CHECK(info.entry == 0x100200);
    // The protected-mode kernel's bytes sit at 1 MiB.
    uint8_t first[2];
    REQUIRE(memory.read(0x100000, first));
    CHECK(first[1] == 7);

    boot_params params = read_boot_params(memory);
    CHECK(params.hdr.boot_flag == 0xaa55);
    CHECK(params.hdr.type_of_loader == 0xff);
    CHECK(params.hdr.cmdline_size == 2047);  // the kernel's own limit, untouched
    CHECK(read_string(memory, params.hdr.cmd_line_ptr) == "console=ttyS0 quiet");

    // The initrd is page-aligned at the top of RAM, after the kernel.
    CHECK(params.hdr.ramdisk_size == 10000);
    CHECK(params.hdr.ramdisk_image % 4096 == 0);
    CHECK(params.hdr.ramdisk_image + 10000 <= 64 * kMiB);
    CHECK(params.hdr.ramdisk_image >= info.kernel_end);
    uint8_t byte = 0;
    REQUIRE(memory.read(params.hdr.ramdisk_image + 9999, std::span(&byte, 1)));
    CHECK(byte == 0x42);

    REQUIRE(params.e820_entries == 4);
    CHECK(params.e820_table[0].addr == 0);
    CHECK(params.e820_table[0].type == kE820Ram);
    CHECK(params.e820_table[3].addr == 0x100000);
    CHECK(params.e820_table[3].size == 63 * kMiB);
}

TEST_CASE("an initrd is placed below initrd_addr_max") {
    GuestMemory memory = GuestMemory::allocate(64 * kMiB);
    auto image = test_images::bzimage();
    test_images::put32(image, 0x22c, 0x01ffffff);  // 32 MiB - 1
    TempFile kernel(image);
    TempFile initrd(std::vector<uint8_t>(5000, 1));
    LinuxBootInfo info = load_linux(memory, {kernel.path(), initrd.path(), ""});
    CHECK(info.initrd_address + info.initrd_size <= 0x02000000);
}

TEST_CASE("an ELF vmlinux is loaded at its physical addresses with .bss zeroed") {
    GuestMemory memory = GuestMemory::allocate(64 * kMiB);
    memory.span(0x1001000, 0x2000)->front() = 0x99;  // stale byte in .bss
    TempFile kernel(test_images::elf());
    LinuxBootInfo info = load_linux(memory, {kernel.path(), std::nullopt, "console=ttyS0"});
    CHECK(info.format == KernelFormat::ElfVmlinux);
    CHECK(info.entry == 0x1000040);
    uint8_t bytes[2];
    REQUIRE(memory.read(0x1000000, bytes));
    CHECK(bytes[0] == 0xab);
    REQUIRE(memory.read(0x1001000, bytes));
    CHECK(bytes[0] == 0);
    boot_params params = read_boot_params(memory);
    CHECK(params.hdr.header == 0x53726448);
    CHECK(params.hdr.cmdline_size == sizeof("console=ttyS0"));
    CHECK(params.hdr.ramdisk_size == 0);
}

TEST_CASE("bad kernels and initrds are refused before anything runs") {
    GuestMemory memory = GuestMemory::allocate(32 * kMiB);
    TempFile good(test_images::bzimage());
    auto expect_failure = [&](const LinuxBootFiles& files, const std::string& text, ExitCode code) {
        try {
            load_linux(memory, files);
            FAIL("no error for: " << text);
        } catch (const VmmError& error) {
            CHECK_THAT(error.what(), Contains(text));
            CHECK(error.code() == code);
        }
    };
    SECTION("missing kernel") {
        expect_failure({"/nonexistent/bzImage", std::nullopt, ""}, "No such file", ExitCode::BadImage);
    }
    SECTION("kernel is a directory") { expect_failure({"/tmp", std::nullopt, ""}, "not a regular file", ExitCode::BadImage); }
    SECTION("empty kernel") {
        TempFile empty(std::vector<uint8_t>{});
        expect_failure({empty.path(), std::nullopt, ""}, "is empty", ExitCode::BadImage);
    }
    SECTION("neither bzImage nor ELF") {
        TempFile text(std::vector<uint8_t>(4096, 'x'));
        expect_failure({text.path(), std::nullopt, ""}, "neither a bzImage nor an ELF", ExitCode::BadImage);
    }
    SECTION("kernel larger than RAM") {
        auto image = test_images::bzimage();
        test_images::put32(image, 0x260, 64 * kMiB);  // init_size
        TempFile big(image);
        expect_failure({big.path(), std::nullopt, ""}, "beyond the guest's 32 MiB", ExitCode::BadImage);
    }
    SECTION("ELF segment outside RAM") {
        TempFile elf(test_images::elf(0x4000000));
        expect_failure({elf.path(), std::nullopt, ""}, "beyond the guest's", ExitCode::BadImage);
    }
    SECTION("ELF loading below 1 MiB") {
        TempFile elf(test_images::elf(0x8000));
        expect_failure({elf.path(), std::nullopt, ""}, "below 1 MiB", ExitCode::BadImage);
    }
    SECTION("initrd too large") {
        TempFile initrd(std::vector<uint8_t>(31 * kMiB, 0));
        expect_failure({good.path(), initrd.path(), ""}, "does not fit", ExitCode::BadImage);
    }
    SECTION("missing initrd") {
        expect_failure({good.path(), std::string("/nonexistent/initrd"), ""}, "initrd '/nonexistent/initrd'",
                       ExitCode::BadImage);
    }
    SECTION("command line too long for the kernel") {
        expect_failure({good.path(), std::nullopt, std::string(3000, 'a')}, "at most 2047", ExitCode::Usage);
    }
}

TEST_CASE("the e820 map keeps the legacy area and the hole out of RAM") {
    auto map = build_e820_map(GuestMemory::layout(4ULL << 30));
    REQUIRE(map.size() == 5);
    CHECK(map[0].address == 0);
    CHECK(map[0].size == 0x9fc00);
    CHECK(map[1].type == kE820Reserved);
    CHECK(map[2].address == 0xe0000);
    CHECK(map[2].address + map[2].size == 0x100000);
    CHECK(map[2].type == kE820Reserved);
    CHECK(map[3].address == 0x100000);
    CHECK(map[3].address + map[3].size == 0xc0000000);
    CHECK(map[4].address == 1ULL << 32);
    CHECK(map[4].size == 1ULL << 30);
    CHECK(map[4].type == kE820Ram);
}
