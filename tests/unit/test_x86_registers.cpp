#include <catch2/catch.hpp>

#include <cstring>
#include <string>

#include "vmm/backends/gdb/kvm_x86_registers.h"
#include "vmm/backends/gdb/x86_registers.h"
#include "vmm/backends/gdb/x86_target_xml.h"

using namespace minikvm::gdb;

namespace {

size_t offset_of(X86Reg reg) { return x86_register_slot(reg).offset; }

KvmCpuState sample_state() {
    KvmCpuState state;
    kvm_regs& r = state.regs;
    r.rax = 0x1111; r.rbx = 0x2222; r.rcx = 0x3333; r.rdx = 0x4444;
    r.rsi = 0x5555; r.rdi = 0x6666; r.rsp = 0x7777; r.rbp = 0x8888;
    r.r8 = 8; r.r9 = 9; r.r10 = 10; r.r11 = 11; r.r12 = 12; r.r13 = 13; r.r14 = 14; r.r15 = 15;
    r.rip = 0xffff'ffff'8100'0000ULL;
    r.rflags = 0x246;
    kvm_sregs& s = state.sregs;
    s.cs.selector = 0x10; s.ss.selector = 0x18; s.ds.selector = 0x20;
    s.es.selector = 0x28; s.fs.selector = 0x30; s.gs.selector = 0x38;
    s.cs.base = 0x1234;  // a descriptor cache gdb never sees
    s.fs.base = 0x7f00'0000'1000ULL;
    s.gs.base = 0xffff'8880'0000'0000ULL;
    s.cr0 = 0x8005'0033; s.cr2 = 0xdead'b000; s.cr3 = 0x1'0000; s.cr4 = 0x3'06f0; s.cr8 = 2; s.efer = 0xd01;
    s.tr.selector = 0x40;
    s.apic_base = 0xfee0'0900;
    kvm_fpu& f = state.fpu;
    f.fcw = 0x37f;
    f.fsw = 7 << 11;  // TOP = 7
    f.last_opcode = 0x123;
    f.last_ip = 0x1122'3344'5566'7788ULL;
    f.last_dp = 0x99aa'bbcc'ddee'ff00ULL;
    f.mxcsr = 0x1f80;
    for (int i = 0; i < 16; ++i) f.xmm[i][0] = static_cast<uint8_t>(0xa0 + i);
    // ST(0) = 1.0: significand with its integer bit, biased exponent 0x3fff.
    f.fpr[0][7] = 0x80; f.fpr[0][8] = 0xff; f.fpr[0][9] = 0x3f;
    f.ftwx = 1 << 7;  // physical R7 = ST(0) with TOP = 7
    return state;
}

}  // namespace

TEST_CASE("x86 registers: gdb's 'g' layout") {
    CHECK(kX86RegisterCount == 65);
    CHECK(X86RegisterFile::kBytes == 600);
    CHECK(offset_of(X86Reg::Rip) == 128);
    CHECK(offset_of(X86Reg::Eflags) == 136);
    CHECK(offset_of(X86Reg::Cs) == 140);
    CHECK(offset_of(X86Reg::St0) == 164);
    CHECK(offset_of(X86Reg::Fctrl) == 244);
    CHECK(offset_of(X86Reg::Xmm0) == 276);
    CHECK(offset_of(X86Reg::Mxcsr) == 532);
    CHECK(offset_of(X86Reg::FsBase) == 536);
    CHECK(offset_of(X86Reg::Cr0) == 552);
    CHECK(offset_of(X86Reg::Efer) == 592);
    CHECK(x86_register_slot(size_t{64})->size == 8);
    CHECK_FALSE(x86_register_slot(size_t{65}).has_value());
    CHECK_FALSE(x86_register_slot(~size_t{0}).has_value());
}

TEST_CASE("x86 registers: values are little-endian and cut to the register's width") {
    X86RegisterFile file;
    file.set(X86Reg::Eflags, 0x1'0000'0246ULL);
    CHECK(file.get(X86Reg::Eflags) == 0x246);
    CHECK(file.image()[136] == 0x46);
    CHECK(file.image()[137] == 0x02);
    file.set(X86Reg::Rbx, 0x0102'0304'0506'0708ULL);
    CHECK(file.image()[8] == 0x08);
    CHECK(file.image()[15] == 0x01);
    CHECK(file.get(X86Reg::Rax) == 0);
}

TEST_CASE("x86 target description: every register, numbered as in 'g'") {
    std::string xml = x86_target_xml();
    CHECK(xml.find("<architecture>i386:x86-64</architecture>") != std::string::npos);
    for (const char* feature : {"org.gnu.gdb.i386.core", "org.gnu.gdb.i386.sse", "org.gnu.gdb.i386.segments"})
        CHECK(xml.find(std::string("<feature name=\"") + feature + "\">") != std::string::npos);
    const auto& table = x86_register_table();
    for (size_t n = 0; n < table.size(); ++n) {
        std::string reg = "<reg name=\"" + std::string(table[n].name) + "\" bitsize=\"" +
                          std::to_string(table[n].bits) + "\"";
        INFO(reg);
        size_t at = xml.find(reg);
        REQUIRE(at != std::string::npos);
        CHECK(xml.find("regnum=\"" + std::to_string(n) + "\"", at) < xml.find("/>", at));
    }
    // Well formed enough: every opened feature closes, types used are defined.
    size_t opened = 0, closed = 0;
    for (size_t at = 0; (at = xml.find("<feature ", at)) != std::string::npos; ++at) ++opened;
    for (size_t at = 0; (at = xml.find("</feature>", at)) != std::string::npos; ++at) ++closed;
    CHECK(opened == 4);
    CHECK(closed == 4);
    for (const char* type : {"x86_eflags", "x86_mxcsr", "vec128"})
        CHECK(xml.find(std::string("id=\"") + type + "\"") != std::string::npos);
    CHECK(xml.back() == '\n');
}

TEST_CASE("kvm registers: KVM's state as gdb's register file") {
    KvmCpuState state = sample_state();
    X86RegisterFile file = registers_from_kvm(state);
    CHECK(file.get(X86Reg::Rax) == 0x1111);
    CHECK(file.get(X86Reg::Rbp) == 0x8888);  // kvm_regs has rsp first; gdb has rbp first
    CHECK(file.get(X86Reg::Rsp) == 0x7777);
    CHECK(file.get(X86Reg::R15) == 15);
    CHECK(file.get(X86Reg::Rip) == 0xffff'ffff'8100'0000ULL);
    CHECK(file.get(X86Reg::Eflags) == 0x246);
    CHECK(file.get(X86Reg::Cs) == 0x10);
    CHECK(file.get(X86Reg::Gs) == 0x38);
    CHECK(file.get(X86Reg::FsBase) == 0x7f00'0000'1000ULL);
    CHECK(file.get(X86Reg::GsBase) == 0xffff'8880'0000'0000ULL);
    CHECK(file.get(X86Reg::Cr0) == 0x8005'0033);
    CHECK(file.get(X86Reg::Cr2) == 0xdead'b000);
    CHECK(file.get(X86Reg::Cr3) == 0x1'0000);
    CHECK(file.get(X86Reg::Cr4) == 0x3'06f0);
    CHECK(file.get(X86Reg::Cr8) == 2);
    CHECK(file.get(X86Reg::Efer) == 0xd01);
    CHECK(file.get(X86Reg::Fctrl) == 0x37f);
    CHECK(file.get(X86Reg::Fop) == 0x123);
    CHECK(file.get(X86Reg::Fioff) == 0x5566'7788);
    CHECK(file.get(X86Reg::Fiseg) == 0x1122'3344);
    CHECK(file.get(X86Reg::Fooff) == 0xddee'ff00);
    CHECK(file.get(X86Reg::Foseg) == 0x99aa'bbcc);
    CHECK(file.get(X86Reg::Mxcsr) == 0x1f80);
    CHECK(file.get(X86Reg::Ftag) == 0x3fff);  // R7 valid, the rest empty
    CHECK(file.bytes(X86Reg::St0)[9] == 0x3f);
    CHECK(file.bytes(X86Reg::Xmm15)[0] == 0xaf);
}

TEST_CASE("kvm registers: gdb's edits go back, everything else stays") {
    KvmCpuState state = sample_state();
    X86RegisterFile file = registers_from_kvm(state);
    file.set(X86Reg::Rip, 0x1000);
    file.set(X86Reg::Rsp, 0x2000);
    file.set(X86Reg::Fs, 0x2b);
    file.set(X86Reg::Cr3, 0x5000);
    file.set(X86Reg::Ftag, 0xfffc);  // R0 valid
    file.bytes(X86Reg::Xmm3)[15] = 0x5a;
    KvmCpuState back = state;
    registers_to_kvm(file, back);
    CHECK(back.regs.rip == 0x1000);
    CHECK(back.regs.rsp == 0x2000);
    CHECK(back.regs.rbp == 0x8888);
    CHECK(back.sregs.fs.selector == 0x2b);
    CHECK(back.sregs.fs.base == 0x7f00'0000'1000ULL);
    CHECK(back.sregs.cr3 == 0x5000);
    CHECK(back.fpu.ftwx == 0x01);
    CHECK(back.fpu.xmm[3][15] == 0x5a);
    CHECK(back.fpu.last_ip == 0x1122'3344'5566'7788ULL);
    // What gdb cannot see is KVM's, untouched.
    CHECK(back.sregs.cs.base == 0x1234);
    CHECK(back.sregs.tr.selector == 0x40);
    CHECK(back.sregs.apic_base == 0xfee0'0900);

    // An unedited round trip changes nothing at all.
    KvmCpuState again = state;
    registers_to_kvm(registers_from_kvm(state), again);
    CHECK(std::memcmp(&again.regs, &state.regs, sizeof state.regs) == 0);
    CHECK(std::memcmp(&again.sregs, &state.sregs, sizeof state.sregs) == 0);
    CHECK(std::memcmp(&again.fpu, &state.fpu, sizeof state.fpu) == 0);
}

TEST_CASE("kvm registers: the x87 tag word in full and abridged forms") {
    uint8_t stack[8][16] = {};
    CHECK(full_x87_tag(0, 0, stack) == 0xffff);
    // TOP = 0: R0 is ST(0). Zero -> 01; 1.0 -> 00; an infinity -> 10; unnormal -> 10.
    CHECK(full_x87_tag(0x01, 0, stack) == 0xfffd);
    stack[0][7] = 0x80; stack[0][8] = 0xff; stack[0][9] = 0x3f;
    CHECK(full_x87_tag(0x01, 0, stack) == 0xfffc);
    stack[0][8] = 0xff; stack[0][9] = 0x7f;
    CHECK(full_x87_tag(0x01, 0, stack) == 0xfffe);
    stack[0][7] = 0x00; stack[0][9] = 0x3f;
    CHECK(full_x87_tag(0x01, 0, stack) == 0xfffe);
    // TOP = 2: ST(0) lives in R2.
    stack[0][7] = 0x80;
    CHECK(full_x87_tag(0x04, 2 << 11, stack) == 0xffcf);
    CHECK(abridged_x87_tag(0xffff) == 0);
    CHECK(abridged_x87_tag(0x0000) == 0xff);
    CHECK(abridged_x87_tag(0xffcf) == 0x04);
    CHECK(abridged_x87_tag(0x7fff) == 0x80);
}
