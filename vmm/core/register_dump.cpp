#include "vmm/core/register_dump.h"

#include <fmt/format.h>

#include <exception>

namespace minikvm {

namespace {
std::string segment(const char* name, const kvm_segment& s) {
    return fmt::format("{}={:04x} base={:016x} limit={:08x} type={:x} dpl={} l={} db={}", name, s.selector, s.base,
                       s.limit, s.type, s.dpl, s.l, s.db);
}
}  // namespace

std::string dump_registers(const Vcpu& vcpu) {
    try {
        kvm_regs r = vcpu.regs();
        kvm_sregs s = vcpu.sregs();
        std::string out = fmt::format("vCPU {} registers:\n", vcpu.index());
        out += fmt::format("  rip={:016x} rsp={:016x} rbp={:016x} rflags={:08x}\n", r.rip, r.rsp, r.rbp, r.rflags);
        out += fmt::format("  rax={:016x} rbx={:016x} rcx={:016x} rdx={:016x}\n", r.rax, r.rbx, r.rcx, r.rdx);
        out += fmt::format("  rsi={:016x} rdi={:016x} r8 ={:016x} r9 ={:016x}\n", r.rsi, r.rdi, r.r8, r.r9);
        out += fmt::format("  r10={:016x} r11={:016x} r12={:016x} r13={:016x}\n", r.r10, r.r11, r.r12, r.r13);
        out += fmt::format("  r14={:016x} r15={:016x}\n", r.r14, r.r15);
        out += fmt::format("  cr0={:016x} cr2={:016x} cr3={:016x} cr4={:016x} efer={:x}\n", s.cr0, s.cr2, s.cr3,
                           s.cr4, s.efer);
        out += "  " + segment("cs", s.cs) + "\n  " + segment("ss", s.ss) + "\n";
        out += fmt::format("  gdt={:016x}/{:x} idt={:016x}/{:x} apic_base={:x}", s.gdt.base, s.gdt.limit, s.idt.base,
                           s.idt.limit, s.apic_base);
        return out;
    } catch (const std::exception& error) {
        return fmt::format("vCPU {} registers unavailable: {}", vcpu.index(), error.what());
    }
}

}  // namespace minikvm
