#pragma once
// The x86-64 registers as gdb sees them: one table (name, width, type, the
// target-description feature it belongs to) from which both the 'g' packet
// layout and the target description (x86_target_xml) are made, so the two
// cannot disagree. gdb numbers registers in the order the description lists
// them, and 'g' is their little-endian bytes in that order.
//
// Names and widths follow gdb's standard x86 features (org.gnu.gdb.i386.core,
// .sse, .segments; gdb manual, "i386 Features"); the control registers go in
// a feature of minikvm's own, which gdb shows like any other registers.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace minikvm::gdb {

enum class X86Feature : uint8_t { Core, Sse, Segments, System };

// In gdb's numbering.
enum class X86Reg : uint8_t {
    Rax, Rbx, Rcx, Rdx, Rsi, Rdi, Rbp, Rsp, R8, R9, R10, R11, R12, R13, R14, R15,
    Rip, Eflags, Cs, Ss, Ds, Es, Fs, Gs,
    St0, St1, St2, St3, St4, St5, St6, St7,
    Fctrl, Fstat, Ftag, Fiseg, Fioff, Foseg, Fooff, Fop,
    Xmm0, Xmm1, Xmm2, Xmm3, Xmm4, Xmm5, Xmm6, Xmm7,
    Xmm8, Xmm9, Xmm10, Xmm11, Xmm12, Xmm13, Xmm14, Xmm15, Mxcsr,
    FsBase, GsBase,
    Cr0, Cr2, Cr3, Cr4, Cr8, Efer,
    Count,
};

inline constexpr size_t kX86RegisterCount = static_cast<size_t>(X86Reg::Count);

struct X86RegisterInfo {
    std::string_view name;
    uint16_t bits;
    std::string_view type;   // a gdb built-in type or one the description defines
    std::string_view group;  // "" for gdb's default
    X86Feature feature;
};

const std::array<X86RegisterInfo, kX86RegisterCount>& x86_register_table();

struct X86RegisterSlot {
    size_t offset;  // in the 'g' image
    size_t size;    // bytes
};
// Where gdb's register `number` lies in the 'g' image; nullopt past the end.
std::optional<X86RegisterSlot> x86_register_slot(size_t number);
X86RegisterSlot x86_register_slot(X86Reg reg);

// The bytes of every register, in 'g' order.
class X86RegisterFile {
public:
    static constexpr size_t kBytes = 600;

    // Registers of at most 64 bits, zero-extended / truncated to their width.
    uint64_t get(X86Reg reg) const;
    void set(X86Reg reg, uint64_t value);

    std::span<uint8_t> bytes(X86Reg reg);
    std::span<const uint8_t> bytes(X86Reg reg) const;
    std::span<uint8_t> image() { return bytes_; }
    std::span<const uint8_t> image() const { return bytes_; }

    friend bool operator==(const X86RegisterFile&, const X86RegisterFile&) = default;

private:
    std::array<uint8_t, kBytes> bytes_{};
};

}  // namespace minikvm::gdb
