#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <variant>

#include "vmm/core/guest_page_walk.h"
#include "vmm/core/x86_control_bits.h"

using namespace minikvm;

namespace {

constexpr uint64_t kMiB = 1ULL << 20;
using namespace x86;
constexpr uint64_t kPresentWritable = kPagePresent | kPageWritable;
constexpr uint64_t kPs = kPageSize;
constexpr uint64_t kCr0Pg = kCr0Paging, kCr0Pe = kCr0ProtectionEnable;

// Page tables built in a small guest RAM, tables from 1 MiB up.
struct Tables {
    GuestMemory memory = GuestMemory::allocate(16 * kMiB);
    uint64_t next_table = 1 * kMiB;

    uint64_t new_table() {
        uint64_t table = next_table;
        next_table += 0x1000;
        return table;
    }
    void put64(uint64_t at, uint64_t value) { REQUIRE(memory.write_object(at, value)); }
    void put32(uint64_t at, uint32_t value) { REQUIRE(memory.write_object(at, value)); }
    uint64_t get64(uint64_t at) {
        uint64_t value = 0;
        REQUIRE(memory.read(at, std::span(reinterpret_cast<uint8_t*>(&value), 8)));
        return value;
    }

    // Maps `va` to `pa` with a leaf at `leaf_level` (1: 4 KiB, 2: 2 MiB, 3: 1 GiB)
    // in the 64-bit-entry hierarchy of `levels` levels rooted at `root`.
    void map(uint64_t root, int levels, uint64_t va, uint64_t pa, int leaf_level) {
        uint64_t table = root;
        for (int level = levels; level > leaf_level; --level) {
            uint64_t slot = table + ((va >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
            uint64_t entry = get64(slot);
            if ((entry & 1) == 0) {
                entry = new_table() | kPresentWritable;
                put64(slot, entry);
            }
            table = entry & 0x000f'ffff'ffff'f000ULL;
        }
        uint64_t slot = table + ((va >> (12 + 9 * (leaf_level - 1))) & 0x1ff) * 8;
        put64(slot, pa | kPresentWritable | (leaf_level > 1 ? kPs : 0));
    }
};

PagingRegisters long_mode(uint64_t cr3, bool la57 = false) {
    return {kCr0Pg | kCr0Pe, cr3, kCr4Pae | (la57 ? kCr4La57 : 0), kEferLme | kEferLma};
}

PageTranslation translated(const std::variant<PageTranslation, WalkFailure>& result) {
    REQUIRE(std::holds_alternative<PageTranslation>(result));
    return std::get<PageTranslation>(result);
}

WalkFailure failed(const std::variant<PageTranslation, WalkFailure>& result) {
    REQUIRE(std::holds_alternative<WalkFailure>(result));
    return std::get<WalkFailure>(result);
}

}  // namespace

TEST_CASE("page walk: the paging mode follows CR0.PG, CR4.PAE, EFER.LMA and CR4.LA57") {
    CHECK(paging_mode({kCr0Pe, 0, kCr4Pae, 0}) == PagingMode::Off);
    CHECK(paging_mode({kCr0Pg | kCr0Pe, 0, 0, 0}) == PagingMode::Bits32);
    CHECK(paging_mode({kCr0Pg | kCr0Pe, 0, kCr4Pae, 0}) == PagingMode::Pae);
    CHECK(paging_mode(long_mode(0)) == PagingMode::Level4);
    CHECK(paging_mode(long_mode(0, true)) == PagingMode::Level5);
}

TEST_CASE("page walk: paging off is the identity below 4 GiB") {
    Tables tables;
    PagingRegisters off{kCr0Pe, 0, 0, 0};
    auto t = translated(translate_virtual(tables.memory, off, 0x12345));
    CHECK(t.physical == 0x12345);
    CHECK(t.bytes_to_end == 0x1000 - 0x345);
    CHECK(failed(translate_virtual(tables.memory, off, 0x1'0000'0000)) == WalkFailure::NotMapped);
}

TEST_CASE("page walk: 4-level paging with 4 KiB, 2 MiB and 1 GiB pages") {
    Tables tables;
    uint64_t pml4 = tables.new_table();
    tables.map(pml4, 4, 0xffff'ffff'8100'0000ULL, 0x20'0000, 1);
    tables.map(pml4, 4, 0xffff'ffff'8120'0000ULL, 0x40'0000, 2);
    tables.map(pml4, 4, 0x0000'0040'0000'0000ULL, 0x4000'0000, 3);
    PagingRegisters regs = long_mode(pml4 | 0x18);  // PWT/PCD bits in CR3 are not address bits

    auto small = translated(translate_virtual(tables.memory, regs, 0xffff'ffff'8100'0123ULL));
    CHECK(small.physical == 0x20'0123);
    CHECK(small.page_size == 0x1000);
    CHECK(small.bytes_to_end == 0x1000 - 0x123);

    auto big = translated(translate_virtual(tables.memory, regs, 0xffff'ffff'8131'2345ULL));
    CHECK(big.physical == 0x51'2345);
    CHECK(big.page_size == 2 * kMiB);

    auto huge = translated(translate_virtual(tables.memory, regs, 0x0000'0040'1234'5678ULL));
    CHECK(huge.physical == 0x5234'5678);
    CHECK(huge.page_size == 1ULL << 30);
    CHECK(huge.bytes_to_end == (1ULL << 30) - 0x1234'5678);
}

TEST_CASE("page walk: not-present entries and non-canonical addresses fail cleanly") {
    Tables tables;
    uint64_t pml4 = tables.new_table();
    tables.map(pml4, 4, 0x40'0000, 0x20'0000, 1);
    PagingRegisters regs = long_mode(pml4);
    CHECK(failed(translate_virtual(tables.memory, regs, 0x40'1000)) == WalkFailure::NotMapped);  // empty PTE
    CHECK(failed(translate_virtual(tables.memory, regs, 0x8000'0000)) == WalkFailure::NotMapped);  // empty PDPTE
    CHECK(failed(translate_virtual(tables.memory, regs, 0x0000'8000'0000'0000ULL)) == WalkFailure::NonCanonical);
    CHECK(failed(translate_virtual(tables.memory, regs, 0xfff0'0000'0000'0000ULL)) == WalkFailure::NonCanonical);
}

TEST_CASE("page walk: table pointers outside guest RAM end the walk, never read outside it") {
    Tables tables;
    uint64_t pml4 = tables.new_table();
    // CR3 itself past the end of RAM.
    CHECK(failed(translate_virtual(tables.memory, long_mode(0x7f'0000'0000ULL), 0x1000)) ==
          WalkFailure::TableOutsideRam);
    // A PML4 entry pointing into the MMIO hole, one into the 52-bit maximum.
    tables.put64(pml4, 0xC000'0000ULL | kPresentWritable);
    tables.put64(pml4 + 8, 0x000f'ffff'ffff'f000ULL | kPresentWritable);
    CHECK(failed(translate_virtual(tables.memory, long_mode(pml4), 0x1000)) == WalkFailure::TableOutsideRam);
    CHECK(failed(translate_virtual(tables.memory, long_mode(pml4), 0x80'0000'1000ULL)) ==
          WalkFailure::TableOutsideRam);
    // The last table slot of a table that ends exactly at the end of RAM.
    uint64_t last = 16 * kMiB - 0x1000;
    tables.put64(last + 0xff8, 0);
    CHECK(failed(translate_virtual(tables.memory, long_mode(last), 0xffff'ff80'0000'0000ULL)) ==
          WalkFailure::NotMapped);
}

TEST_CASE("page walk: a page frame outside RAM translates but is never copied") {
    Tables tables;
    uint64_t pml4 = tables.new_table();
    tables.map(pml4, 4, 0x1000, 0x7f'0000'0000ULL, 1);
    PagingRegisters regs = long_mode(pml4);
    CHECK(translated(translate_virtual(tables.memory, regs, 0x1000)).physical == 0x7f'0000'0000ULL);
    std::array<uint8_t, 16> buffer{};
    CHECK(read_virtual(tables.memory, regs, 0x1000, buffer) == 0);
    CHECK(write_virtual(tables.memory, regs, 0x1000, buffer) == 0);
}

TEST_CASE("page walk: 5-level paging (LA57) uses bits 56:48") {
    Tables tables;
    uint64_t pml5 = tables.new_table();
    uint64_t va = 0xff11'2233'4455'6000ULL;  // canonical for 57 bits, not for 48
    tables.map(pml5, 5, va, 0x30'0000, 1);
    CHECK(translated(translate_virtual(tables.memory, long_mode(pml5, true), va + 0x10)).physical == 0x30'0010);
    CHECK(failed(translate_virtual(tables.memory, long_mode(pml5, false), va)) == WalkFailure::NonCanonical);
    CHECK(failed(translate_virtual(tables.memory, long_mode(pml5, true), 0x0100'0000'0000'0000ULL)) ==
          WalkFailure::NonCanonical);
}

TEST_CASE("page walk: PAE paging with its four-entry PDPT") {
    Tables tables;
    uint64_t pdpt = 0x10'0020;  // 32-byte aligned, not page aligned
    uint64_t directory = 0x10'1000, table = 0x10'2000;
    tables.put64(pdpt + 3 * 8, directory | 1);                        // 0xC0000000..
    tables.put64(directory + 1 * 8, 0x60'0000 | kPresentWritable | kPs);  // 2 MiB at 0xC0200000
    tables.put64(directory + 2 * 8, table | kPresentWritable);
    tables.put64(table + 5 * 8, 0x7000 | kPresentWritable);           // 0xC0405000
    PagingRegisters regs{kCr0Pg | kCr0Pe, pdpt, kCr4Pae, 0};
    CHECK(translated(translate_virtual(tables.memory, regs, 0xC021'2345)).physical == 0x61'2345);
    CHECK(translated(translate_virtual(tables.memory, regs, 0xC040'5678)).physical == 0x7678);
    CHECK(failed(translate_virtual(tables.memory, regs, 0x4000'0000)) == WalkFailure::NotMapped);
    CHECK(failed(translate_virtual(tables.memory, regs, 0x1'0000'0000ULL)) == WalkFailure::NotMapped);
}

TEST_CASE("page walk: 32-bit paging with 4 KiB pages and PSE's 4 MiB pages") {
    Tables tables;
    uint64_t directory = 0x10'0000, table = 0x10'1000;
    tables.put32(directory + 0x300 * 4, 0x0040'0000 | 0x83);  // 4 MiB at 0xC0000000
    tables.put32(directory + 0x301 * 4, (0x1 << 13) | 0x83);  // PSE-36: physical bit 32
    tables.put32(directory + 1 * 4, static_cast<uint32_t>(table | 3));
    tables.put32(table + 2 * 4, 0x9000 | 3);                  // 0x00402000
    PagingRegisters regs{kCr0Pg | kCr0Pe, directory, kCr4Pse, 0};
    CHECK(translated(translate_virtual(tables.memory, regs, 0xC012'3456)).physical == 0x52'3456);
    CHECK(translated(translate_virtual(tables.memory, regs, 0xC040'0010)).physical == 0x1'0000'0010ULL);
    CHECK(translated(translate_virtual(tables.memory, regs, 0x40'2abc)).physical == 0x9abc);
    // Without CR4.PSE the PS bit is ignored: the entry is a page table.
    tables.put32(0x40'0000, 0x5000 | 3);
    PagingRegisters no_pse{kCr0Pg | kCr0Pe, directory, 0, 0};
    CHECK(translated(translate_virtual(tables.memory, no_pse, 0xC000'0000)).page_size == 0x1000);
}

TEST_CASE("page walk: copies cross pages and stop at the first unmapped one") {
    Tables tables;
    uint64_t pml4 = tables.new_table();
    // Two virtually adjacent pages, physically apart and in reverse order.
    tables.map(pml4, 4, 0x1000, 0x30'0000, 1);
    tables.map(pml4, 4, 0x2000, 0x20'0000, 1);
    PagingRegisters regs = long_mode(pml4);
    std::array<uint8_t, 8> pattern{1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(write_virtual(tables.memory, regs, 0x1ffc, pattern) == 8);
    std::array<uint8_t, 4> tail{};
    REQUIRE(tables.memory.read(0x20'0000, tail));
    CHECK(tail == std::array<uint8_t, 4>{5, 6, 7, 8});
    std::array<uint8_t, 8> back{};
    CHECK(read_virtual(tables.memory, regs, 0x1ffc, back) == 8);
    CHECK(back == pattern);
    // 0x3000 is unmapped: a read from 0x2ff8 gets 8 of its 16 bytes.
    std::array<uint8_t, 16> partial{};
    CHECK(read_virtual(tables.memory, regs, 0x2ff8, partial) == 8);
    CHECK(read_virtual(tables.memory, regs, 0x3000, partial) == 0);
}
