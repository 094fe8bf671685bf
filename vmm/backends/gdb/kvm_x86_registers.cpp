#include "vmm/backends/gdb/kvm_x86_registers.h"

#include <cstring>

namespace minikvm::gdb {

namespace {

// kvm_regs keeps the general registers in its own order (rsp before rbp).
struct GprField {
    X86Reg reg;
    __u64 kvm_regs::*field;
};
constexpr GprField kGprs[] = {
    {X86Reg::Rax, &kvm_regs::rax}, {X86Reg::Rbx, &kvm_regs::rbx}, {X86Reg::Rcx, &kvm_regs::rcx},
    {X86Reg::Rdx, &kvm_regs::rdx}, {X86Reg::Rsi, &kvm_regs::rsi}, {X86Reg::Rdi, &kvm_regs::rdi},
    {X86Reg::Rbp, &kvm_regs::rbp}, {X86Reg::Rsp, &kvm_regs::rsp}, {X86Reg::R8, &kvm_regs::r8},
    {X86Reg::R9, &kvm_regs::r9},   {X86Reg::R10, &kvm_regs::r10}, {X86Reg::R11, &kvm_regs::r11},
    {X86Reg::R12, &kvm_regs::r12}, {X86Reg::R13, &kvm_regs::r13}, {X86Reg::R14, &kvm_regs::r14},
    {X86Reg::R15, &kvm_regs::r15}, {X86Reg::Rip, &kvm_regs::rip},
};

struct SegmentField {
    X86Reg reg;
    kvm_segment kvm_sregs::*field;
};
constexpr SegmentField kSegments[] = {
    {X86Reg::Cs, &kvm_sregs::cs}, {X86Reg::Ss, &kvm_sregs::ss}, {X86Reg::Ds, &kvm_sregs::ds},
    {X86Reg::Es, &kvm_sregs::es}, {X86Reg::Fs, &kvm_sregs::fs}, {X86Reg::Gs, &kvm_sregs::gs},
};

struct ControlField {
    X86Reg reg;
    __u64 kvm_sregs::*field;
};
constexpr ControlField kControls[] = {
    {X86Reg::Cr0, &kvm_sregs::cr0}, {X86Reg::Cr2, &kvm_sregs::cr2}, {X86Reg::Cr3, &kvm_sregs::cr3},
    {X86Reg::Cr4, &kvm_sregs::cr4}, {X86Reg::Cr8, &kvm_sregs::cr8}, {X86Reg::Efer, &kvm_sregs::efer},
};

X86Reg nth(X86Reg first, size_t n) { return static_cast<X86Reg>(static_cast<size_t>(first) + n); }

constexpr uint16_t kTagValid = 0, kTagZero = 1, kTagSpecial = 2, kTagEmpty = 3;

// What FSTENV would say of an 80-bit value (Intel SDM vol. 1, 8.1.7).
uint16_t classify(const uint8_t (&value)[16]) {
    uint64_t significand = 0;
    std::memcpy(&significand, value, sizeof significand);
    uint16_t exponent = static_cast<uint16_t>((value[8] | value[9] << 8) & 0x7fff);
    if (exponent == 0x7fff) return kTagSpecial;
    if (exponent == 0) return significand == 0 ? kTagZero : kTagSpecial;
    return (significand >> 63) != 0 ? kTagValid : kTagSpecial;  // no integer bit: unnormal
}

}  // namespace

uint16_t full_x87_tag(uint8_t abridged, uint16_t status_word, const uint8_t (&stack)[8][16]) {
    unsigned top = (status_word >> 11) & 7;
    uint16_t tag = 0;
    for (unsigned physical = 0; physical < 8; ++physical) {
        // Physical register R(i) is stack register ST((i - TOP) mod 8).
        uint16_t bits = (abridged >> physical & 1) != 0 ? classify(stack[(physical - top) & 7]) : kTagEmpty;
        tag = static_cast<uint16_t>(tag | bits << (2 * physical));
    }
    return tag;
}

uint8_t abridged_x87_tag(uint16_t full) {
    uint8_t abridged = 0;
    for (unsigned physical = 0; physical < 8; ++physical)
        if ((full >> (2 * physical) & 3) != kTagEmpty) abridged = static_cast<uint8_t>(abridged | 1u << physical);
    return abridged;
}

X86RegisterFile registers_from_kvm(const KvmCpuState& state) {
    X86RegisterFile out;
    for (const GprField& gpr : kGprs) out.set(gpr.reg, state.regs.*gpr.field);
    out.set(X86Reg::Eflags, state.regs.rflags);  // bits 63:32 are reserved, zero
    for (const SegmentField& segment : kSegments) out.set(segment.reg, (state.sregs.*segment.field).selector);
    out.set(X86Reg::FsBase, state.sregs.fs.base);
    out.set(X86Reg::GsBase, state.sregs.gs.base);
    for (const ControlField& control : kControls) out.set(control.reg, state.sregs.*control.field);

    const kvm_fpu& fpu = state.fpu;
    for (size_t i = 0; i < 8; ++i) std::memcpy(out.bytes(nth(X86Reg::St0, i)).data(), fpu.fpr[i], 10);
    out.set(X86Reg::Fctrl, fpu.fcw);
    out.set(X86Reg::Fstat, fpu.fsw);
    out.set(X86Reg::Ftag, full_x87_tag(fpu.ftwx, fpu.fsw, fpu.fpr));
    // The 64-bit FXSAVE layout: gdb's fiseg/foseg are the pointers' upper halves.
    out.set(X86Reg::Fioff, fpu.last_ip & 0xffff'ffff);
    out.set(X86Reg::Fiseg, fpu.last_ip >> 32);
    out.set(X86Reg::Fooff, fpu.last_dp & 0xffff'ffff);
    out.set(X86Reg::Foseg, fpu.last_dp >> 32);
    out.set(X86Reg::Fop, fpu.last_opcode);
    for (size_t i = 0; i < 16; ++i) std::memcpy(out.bytes(nth(X86Reg::Xmm0, i)).data(), fpu.xmm[i], 16);
    out.set(X86Reg::Mxcsr, fpu.mxcsr);
    return out;
}

void registers_to_kvm(const X86RegisterFile& in, KvmCpuState& state) {
    for (const GprField& gpr : kGprs) state.regs.*gpr.field = in.get(gpr.reg);
    state.regs.rflags = in.get(X86Reg::Eflags);
    for (const SegmentField& segment : kSegments)
        (state.sregs.*segment.field).selector = static_cast<__u16>(in.get(segment.reg));
    state.sregs.fs.base = in.get(X86Reg::FsBase);
    state.sregs.gs.base = in.get(X86Reg::GsBase);
    for (const ControlField& control : kControls) state.sregs.*control.field = in.get(control.reg);

    kvm_fpu& fpu = state.fpu;
    for (size_t i = 0; i < 8; ++i) std::memcpy(fpu.fpr[i], in.bytes(nth(X86Reg::St0, i)).data(), 10);
    fpu.fcw = static_cast<__u16>(in.get(X86Reg::Fctrl));
    fpu.fsw = static_cast<__u16>(in.get(X86Reg::Fstat));
    fpu.ftwx = abridged_x87_tag(static_cast<uint16_t>(in.get(X86Reg::Ftag)));
    fpu.last_ip = in.get(X86Reg::Fiseg) << 32 | in.get(X86Reg::Fioff);
    fpu.last_dp = in.get(X86Reg::Foseg) << 32 | in.get(X86Reg::Fooff);
    fpu.last_opcode = static_cast<__u16>(in.get(X86Reg::Fop) & 0x7ff);  // an 11-bit field
    for (size_t i = 0; i < 16; ++i) std::memcpy(fpu.xmm[i], in.bytes(nth(X86Reg::Xmm0, i)).data(), 16);
    fpu.mxcsr = static_cast<__u32>(in.get(X86Reg::Mxcsr));
}

}  // namespace minikvm::gdb
