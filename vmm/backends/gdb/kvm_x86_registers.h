#pragma once
// KVM's vCPU state (KVM_GET_REGS / _SREGS / _FPU) as gdb's x86-64 register
// file, and gdb's edits back into it. Writing back changes only what gdb
// can see: descriptor caches, TR/LDT, the GDT/IDT, the APIC base and the
// pending-interrupt bitmap stay as KVM gave them; a segment register write
// changes its selector only.

#include "vmm/backends/gdb/x86_registers.h"
#include "vmm/core/kvm_uapi.h"

namespace minikvm::gdb {

struct KvmCpuState {
    kvm_regs regs{};
    kvm_sregs sregs{};
    kvm_fpu fpu{};
};

X86RegisterFile registers_from_kvm(const KvmCpuState& state);
void registers_to_kvm(const X86RegisterFile& registers, KvmCpuState& state);

// The x87 tag word in its two forms. FXSAVE (and kvm_fpu.ftwx) keeps one bit
// per physical register (1 = not empty); gdb's ftag is the full FSTENV form,
// two bits each (valid, zero, special, empty), which depend on the values.
uint16_t full_x87_tag(uint8_t abridged, uint16_t status_word, const uint8_t (&stack)[8][16]);
uint8_t abridged_x87_tag(uint16_t full);

}  // namespace minikvm::gdb
