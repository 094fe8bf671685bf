#include "vmm/backends/gdb/x86_registers.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace minikvm::gdb {

namespace {

using F = X86Feature;

constexpr std::array<X86RegisterInfo, kX86RegisterCount> kTable = {{
    {"rax", 64, "int64", "", F::Core},
    {"rbx", 64, "int64", "", F::Core},
    {"rcx", 64, "int64", "", F::Core},
    {"rdx", 64, "int64", "", F::Core},
    {"rsi", 64, "int64", "", F::Core},
    {"rdi", 64, "int64", "", F::Core},
    {"rbp", 64, "data_ptr", "", F::Core},
    {"rsp", 64, "data_ptr", "", F::Core},
    {"r8", 64, "int64", "", F::Core},
    {"r9", 64, "int64", "", F::Core},
    {"r10", 64, "int64", "", F::Core},
    {"r11", 64, "int64", "", F::Core},
    {"r12", 64, "int64", "", F::Core},
    {"r13", 64, "int64", "", F::Core},
    {"r14", 64, "int64", "", F::Core},
    {"r15", 64, "int64", "", F::Core},
    {"rip", 64, "code_ptr", "", F::Core},
    {"eflags", 32, "x86_eflags", "", F::Core},
    {"cs", 32, "int32", "", F::Core},
    {"ss", 32, "int32", "", F::Core},
    {"ds", 32, "int32", "", F::Core},
    {"es", 32, "int32", "", F::Core},
    {"fs", 32, "int32", "", F::Core},
    {"gs", 32, "int32", "", F::Core},
    {"st0", 80, "i387_ext", "", F::Core},
    {"st1", 80, "i387_ext", "", F::Core},
    {"st2", 80, "i387_ext", "", F::Core},
    {"st3", 80, "i387_ext", "", F::Core},
    {"st4", 80, "i387_ext", "", F::Core},
    {"st5", 80, "i387_ext", "", F::Core},
    {"st6", 80, "i387_ext", "", F::Core},
    {"st7", 80, "i387_ext", "", F::Core},
    {"fctrl", 32, "int", "float", F::Core},
    {"fstat", 32, "int", "float", F::Core},
    {"ftag", 32, "int", "float", F::Core},
    {"fiseg", 32, "int", "float", F::Core},
    {"fioff", 32, "int", "float", F::Core},
    {"foseg", 32, "int", "float", F::Core},
    {"fooff", 32, "int", "float", F::Core},
    {"fop", 32, "int", "float", F::Core},
    {"xmm0", 128, "vec128", "", F::Sse},
    {"xmm1", 128, "vec128", "", F::Sse},
    {"xmm2", 128, "vec128", "", F::Sse},
    {"xmm3", 128, "vec128", "", F::Sse},
    {"xmm4", 128, "vec128", "", F::Sse},
    {"xmm5", 128, "vec128", "", F::Sse},
    {"xmm6", 128, "vec128", "", F::Sse},
    {"xmm7", 128, "vec128", "", F::Sse},
    {"xmm8", 128, "vec128", "", F::Sse},
    {"xmm9", 128, "vec128", "", F::Sse},
    {"xmm10", 128, "vec128", "", F::Sse},
    {"xmm11", 128, "vec128", "", F::Sse},
    {"xmm12", 128, "vec128", "", F::Sse},
    {"xmm13", 128, "vec128", "", F::Sse},
    {"xmm14", 128, "vec128", "", F::Sse},
    {"xmm15", 128, "vec128", "", F::Sse},
    {"mxcsr", 32, "x86_mxcsr", "vector", F::Sse},
    {"fs_base", 64, "int", "", F::Segments},
    {"gs_base", 64, "int", "", F::Segments},
    {"cr0", 64, "int64", "system", F::System},
    {"cr2", 64, "int64", "system", F::System},
    {"cr3", 64, "int64", "system", F::System},
    {"cr4", 64, "int64", "system", F::System},
    {"cr8", 64, "int64", "system", F::System},
    {"efer", 64, "int64", "system", F::System},
}};

constexpr std::array<X86RegisterSlot, kX86RegisterCount> make_slots() {
    std::array<X86RegisterSlot, kX86RegisterCount> slots{};
    size_t offset = 0;
    for (size_t i = 0; i < kTable.size(); ++i) {
        slots[i] = {offset, kTable[i].bits / 8u};
        offset += slots[i].size;
    }
    return slots;
}

constexpr auto kSlots = make_slots();
static_assert(kSlots.back().offset + kSlots.back().size == X86RegisterFile::kBytes);

}  // namespace

const std::array<X86RegisterInfo, kX86RegisterCount>& x86_register_table() { return kTable; }

std::optional<X86RegisterSlot> x86_register_slot(size_t number) {
    if (number >= kSlots.size()) return std::nullopt;
    return kSlots[number];
}

X86RegisterSlot x86_register_slot(X86Reg reg) { return kSlots[static_cast<size_t>(reg)]; }

std::span<uint8_t> X86RegisterFile::bytes(X86Reg reg) {
    auto slot = x86_register_slot(reg);
    return std::span(bytes_).subspan(slot.offset, slot.size);
}

std::span<const uint8_t> X86RegisterFile::bytes(X86Reg reg) const {
    auto slot = x86_register_slot(reg);
    return std::span(bytes_).subspan(slot.offset, slot.size);
}

// gdb wants the target's byte order, little-endian, which is the host's:
// a plain copy of the low bytes.
static_assert(std::endian::native == std::endian::little);

uint64_t X86RegisterFile::get(X86Reg reg) const {
    auto field = bytes(reg);
    uint64_t value = 0;
    std::memcpy(&value, field.data(), std::min(field.size(), sizeof value));
    return value;
}

void X86RegisterFile::set(X86Reg reg, uint64_t value) {
    auto field = bytes(reg);
    std::memcpy(field.data(), &value, std::min(field.size(), sizeof value));
}

}  // namespace minikvm::gdb
