#include "boot/x86_boot_state.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "boot/memory_layout.h"
#include "vmm/core/x86_control_bits.h"

#include <spdlog/spdlog.h>

namespace minikvm {

namespace {

// GDT layout expected by the boot protocol (selectors are index * 8).
constexpr uint16_t kCodeSelector = 0x10;
constexpr uint16_t kDataSelector = 0x18;
constexpr uint16_t kTssSelector = 0x20;
constexpr std::array<uint64_t, 5> kGdt = {
    0,                      // null
    0,                      // unused
    0x00af9b000000ffffULL,  // 0x10: 64-bit code, present, DPL 0
    0x00cf93000000ffffULL,  // 0x18: flat data, present, DPL 0
    0x00808b000000ffffULL,  // 0x20: TSS (busy); VM entry needs a valid TR
};

kvm_segment segment_from_descriptor(uint64_t descriptor, uint16_t selector) {
    kvm_segment segment{};
    segment.base = static_cast<uint64_t>(((descriptor >> 16) & 0xffffff) | ((descriptor >> 32) & 0xff000000));
    uint32_t limit = static_cast<uint32_t>((descriptor & 0xffff) | ((descriptor >> 32) & 0xf0000));
    segment.g = (descriptor >> 55) & 1;
    segment.limit = segment.g ? (limit << 12) | 0xfff : limit;
    segment.selector = selector;
    segment.type = (descriptor >> 40) & 0xf;
    segment.s = (descriptor >> 44) & 1;
    segment.dpl = (descriptor >> 45) & 3;
    segment.present = (descriptor >> 47) & 1;
    segment.avl = (descriptor >> 52) & 1;
    segment.l = (descriptor >> 53) & 1;
    segment.db = (descriptor >> 54) & 1;
    return segment;
}

using namespace x86;

constexpr uint64_t kPagePresentWritable = kPagePresent | kPageWritable;
constexpr uint64_t kPageHuge = kPageSize;

// MSRs firmware leaves in a known state; values Linux expects at entry.
constexpr std::array<std::pair<uint32_t, uint64_t>, 9> kBootMsrs = {{
    {0x174, 0},            // IA32_SYSENTER_CS
    {0x175, 0},            // IA32_SYSENTER_ESP
    {0x176, 0},            // IA32_SYSENTER_EIP
    {0xc0000081, 0},       // STAR
    {0xc0000082, 0},       // LSTAR
    {0xc0000083, 0},       // CSTAR
    {0xc0000084, 0},       // SYSCALL_MASK
    {0xc0000102, 0},       // KERNEL_GS_BASE
    {0x1a0, 1},            // IA32_MISC_ENABLE: fast strings
}};
constexpr std::pair<uint32_t, uint64_t> kMtrrDefaultType = {0x2ff, (1ULL << 11) | 6};  // MTRRs on, default WB

constexpr size_t kLapicLvt0 = 0x350;
constexpr size_t kLapicLvt1 = 0x360;
constexpr uint32_t kDeliveryModeExtInt = 0x7 << 8;
constexpr uint32_t kDeliveryModeNmi = 0x4 << 8;

void set_lapic_register(kvm_lapic_state& state, size_t offset, uint32_t value) {
    std::memcpy(state.regs + offset, &value, sizeof(value));
}

}  // namespace

void write_boot_tables(const GuestMemory& memory) {
    memory.write_object(layout::kGdt, kGdt);
    memory.write_object(layout::kIdt, uint64_t{0});

    memory.write_object(layout::kPml4, layout::kPdpt | kPagePresentWritable);
    constexpr uint64_t kGiB = 1ULL << 30;
    constexpr uint64_t kTwoMiB = 2ULL << 20;
    for (uint64_t gib = 0; gib < layout::kIdentityMappedBytes / kGiB; ++gib) {
        uint64_t directory = layout::kPageDirectories + gib * 4096;
        memory.write_object(layout::kPdpt + gib * 8, directory | kPagePresentWritable);
        std::array<uint64_t, 512> entries{};
        for (uint64_t i = 0; i < entries.size(); ++i)
            entries[i] = (gib * kGiB + i * kTwoMiB) | kPagePresentWritable | kPageHuge;
        memory.write_object(directory, entries);
    }
}

void set_boot_registers(const Vcpu& vcpu, uint64_t entry) {
    kvm_sregs sregs = vcpu.sregs();
    sregs.gdt.base = layout::kGdt;
    sregs.gdt.limit = sizeof(kGdt) - 1;
    sregs.idt.base = layout::kIdt;
    sregs.idt.limit = sizeof(uint64_t) - 1;
    sregs.cs = segment_from_descriptor(kGdt[kCodeSelector / 8], kCodeSelector);
    kvm_segment data = segment_from_descriptor(kGdt[kDataSelector / 8], kDataSelector);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.tr = segment_from_descriptor(kGdt[kTssSelector / 8], kTssSelector);
    sregs.cr3 = layout::kPml4;
    sregs.cr4 |= kCr4Pae;
    sregs.cr0 = kCr0ProtectionEnable | kCr0ExtensionType | kCr0Paging;
    sregs.efer |= kEferLme | kEferLma;
    vcpu.set_sregs(sregs);

    kvm_regs regs{};
    regs.rflags = 0x2;  // bit 1 is reserved-one; interrupts off
    regs.rip = entry;
    regs.rsp = layout::kBootStack;
    regs.rbp = layout::kBootStack;
    regs.rsi = layout::kBootParams;
    vcpu.set_regs(regs);
}

void set_firmware_defaults(const Vcpu& vcpu, const std::vector<uint32_t>& supported_msrs) {
    std::vector<std::pair<uint32_t, uint64_t>> msrs;
    auto supported = [&](uint32_t index) {
        return std::find(supported_msrs.begin(), supported_msrs.end(), index) != supported_msrs.end();
    };
    for (const auto& msr : kBootMsrs)
        if (supported(msr.first)) msrs.push_back(msr);
    vcpu.set_msrs(msrs);
    // MTRR MSRs are not in KVM's save list but KVM emulates them; without
    // MTRRs enabled Linux also turns PAT off. Older KVMs may refuse: harmless.
    try {
        vcpu.set_msrs(std::span(&kMtrrDefaultType, 1));
    } catch (const std::exception& error) {
        spdlog::debug("vcpu {}: MTRR default type not set: {}", vcpu.index(), error.what());
    }

    kvm_fpu fpu{};
    fpu.fcw = 0x37f;     // x87 default control word
    fpu.mxcsr = 0x1f80;  // SSE: all exceptions masked
    vcpu.set_fpu(fpu);

    // Virtual-wire mode: LINT0 takes the 8259's ExtINT, LINT1 is NMI.
    kvm_lapic_state lapic = vcpu.lapic();
    set_lapic_register(lapic, kLapicLvt0, kDeliveryModeExtInt);
    set_lapic_register(lapic, kLapicLvt1, kDeliveryModeNmi);
    vcpu.set_lapic(lapic);
}

}  // namespace minikvm
