#include "vmm/core/guest_page_walk.h"

#include <algorithm>
#include <optional>

#include "vmm/core/x86_control_bits.h"

namespace minikvm {

namespace {

using namespace x86;

// Bits 51:12 of a 64-bit entry: the next table or the page frame (the
// architectural maximum; bits above MAXPHYADDR must be zero anyway).
constexpr uint64_t kAddressMask = 0x000f'ffff'ffff'f000ULL;
constexpr uint64_t kPage = 4096;
constexpr uint64_t k4GiB = 1ULL << 32;

using Result = std::variant<PageTranslation, WalkFailure>;

PageTranslation page(uint64_t frame_base, uint64_t page_size, uint64_t address) {
    uint64_t offset = address & (page_size - 1);
    return {frame_base | offset, page_size, page_size - offset};
}

template <typename Entry>
std::optional<Entry> read_entry(const GuestMemory& memory, uint64_t address) {
    Entry entry{};
    if (!memory.read(address, std::span(reinterpret_cast<uint8_t*>(&entry), sizeof entry))) return std::nullopt;
    return entry;
}

// 64-bit entries (PAE and IA-32e), from `top_level` down to the page table
// (level 1). `table` is where the top level's entries start.
Result walk_8_byte_entries(const GuestMemory& memory, uint64_t table, uint64_t address, int top_level,
                           bool one_gib_pages) {
    for (int level = top_level; level >= 1; --level) {
        int shift = 12 + 9 * (level - 1);
        uint64_t index = (address >> shift) & 0x1ff;
        auto entry = read_entry<uint64_t>(memory, table + index * 8);
        if (!entry) return WalkFailure::TableOutsideRam;
        if ((*entry & kPagePresent) == 0) return WalkFailure::NotMapped;
        uint64_t frame = *entry & kAddressMask;
        if (level == 1) return page(frame, kPage, address);
        bool large = (*entry & kPageSize) != 0 && (level == 2 || (level == 3 && one_gib_pages));
        if (large) {
            uint64_t size = 1ULL << shift;
            return page(frame & ~(size - 1), size, address);
        }
        table = frame;
    }
    return WalkFailure::NotMapped;  // not reached: level 1 always returns
}

Result walk_32_bit(const GuestMemory& memory, const PagingRegisters& registers, uint64_t address) {
    if (address >= k4GiB) return WalkFailure::NotMapped;
    uint64_t directory = registers.cr3 & 0xffff'f000;
    auto pde = read_entry<uint32_t>(memory, directory + (address >> 22) * 4);
    if (!pde) return WalkFailure::TableOutsideRam;
    if ((*pde & kPagePresent) == 0) return WalkFailure::NotMapped;
    if ((*pde & kPageSize) != 0 && (registers.cr4 & kCr4Pse) != 0) {
        // A 4 MiB page; PSE-36 puts physical bits 39:32 in entry bits 20:13.
        uint64_t frame = (*pde & 0xffc0'0000ULL) | (static_cast<uint64_t>(*pde >> 13 & 0xff) << 32);
        return page(frame, 4ULL << 20, address);
    }
    uint64_t table = *pde & 0xffff'f000ULL;
    auto pte = read_entry<uint32_t>(memory, table + ((address >> 12) & 0x3ff) * 4);
    if (!pte) return WalkFailure::TableOutsideRam;
    if ((*pte & kPagePresent) == 0) return WalkFailure::NotMapped;
    return page(*pte & 0xffff'f000ULL, kPage, address);
}

bool canonical(uint64_t address, int width) {
    // Bits 63:width-1 all equal.
    uint64_t upper = address >> (width - 1);
    return upper == 0 || upper == (~0ULL >> (width - 1));
}

// Copies page by page; `copy` moves one chunk that lies inside one page.
template <typename Copy>
size_t copy_virtual(const GuestMemory& memory, const PagingRegisters& registers, uint64_t address, size_t length,
                    Copy copy) {
    size_t done = 0;
    while (done < length) {
        auto walked = translate_virtual(memory, registers, address + done);
        const auto* translation = std::get_if<PageTranslation>(&walked);
        if (translation == nullptr) break;
        size_t chunk = static_cast<size_t>(std::min<uint64_t>(length - done, translation->bytes_to_end));
        if (!copy(translation->physical, done, chunk)) break;
        done += chunk;
    }
    return done;
}

}  // namespace

PagingMode paging_mode(const PagingRegisters& registers) {
    if ((registers.cr0 & kCr0Paging) == 0) return PagingMode::Off;
    if ((registers.cr4 & kCr4Pae) == 0) return PagingMode::Bits32;
    if ((registers.efer & kEferLma) == 0) return PagingMode::Pae;
    return (registers.cr4 & kCr4La57) != 0 ? PagingMode::Level5 : PagingMode::Level4;
}

std::variant<PageTranslation, WalkFailure> translate_virtual(const GuestMemory& memory,
                                                             const PagingRegisters& registers, uint64_t address) {
    switch (paging_mode(registers)) {
        case PagingMode::Off:
            if (address >= k4GiB) return WalkFailure::NotMapped;
            return page(address & ~(kPage - 1), kPage, address);
        case PagingMode::Bits32:
            return walk_32_bit(memory, registers, address);
        case PagingMode::Pae:
            if (address >= k4GiB) return WalkFailure::NotMapped;
            // The PDPT is 32-byte aligned; its index is address bits 31:30.
            return walk_8_byte_entries(memory, registers.cr3 & 0xffff'ffe0ULL, address, 3, false);
        case PagingMode::Level4:
            if (!canonical(address, 48)) return WalkFailure::NonCanonical;
            return walk_8_byte_entries(memory, registers.cr3 & kAddressMask, address, 4, true);
        case PagingMode::Level5:
            if (!canonical(address, 57)) return WalkFailure::NonCanonical;
            return walk_8_byte_entries(memory, registers.cr3 & kAddressMask, address, 5, true);
    }
    return WalkFailure::NotMapped;
}

size_t read_virtual(const GuestMemory& memory, const PagingRegisters& registers, uint64_t address,
                    std::span<uint8_t> data) {
    return copy_virtual(memory, registers, address, data.size(), [&](uint64_t physical, size_t at, size_t length) {
        return memory.read(physical, data.subspan(at, length));
    });
}

size_t write_virtual(const GuestMemory& memory, const PagingRegisters& registers, uint64_t address,
                     std::span<const uint8_t> data) {
    return copy_virtual(memory, registers, address, data.size(), [&](uint64_t physical, size_t at, size_t length) {
        return memory.write(physical, data.subspan(at, length));
    });
}

}  // namespace minikvm
