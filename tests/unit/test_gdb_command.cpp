#include <catch2/catch.hpp>

#include <string>

#include "vmm/backends/gdb/gdb_command.h"

using namespace minikvm::gdb;

namespace {

template <typename T>
T as(const Command& command) {
    REQUIRE(std::holds_alternative<T>(command));
    return std::get<T>(command);
}

uint8_t error_of(std::string_view payload) {
    INFO(payload);
    return as<cmd::Invalid>(parse_command(payload)).error;
}

bool unknown(std::string_view payload) { return std::holds_alternative<cmd::Unknown>(parse_command(payload)); }

constexpr ThreadSelector kAll{ThreadSelector::Kind::All, 0};
constexpr ThreadSelector kAny{ThreadSelector::Kind::Any, 0};
constexpr ThreadSelector one(ThreadId id) { return {ThreadSelector::Kind::One, id}; }

}  // namespace

TEST_CASE("gdb command: registers") {
    as<cmd::HaltReason>(parse_command("?"));
    as<cmd::ReadRegisters>(parse_command("g"));
    CHECK(as<cmd::WriteRegisters>(parse_command("G0aff")).image == std::vector<uint8_t>{0x0a, 0xff});
    CHECK(as<cmd::ReadRegister>(parse_command("p10")).number == 0x10);
    auto write = as<cmd::WriteRegister>(parse_command("P10=00100000"));
    CHECK(write.number == 0x10);
    CHECK(write.value == std::vector<uint8_t>{0, 0x10, 0, 0});
}

TEST_CASE("gdb command: memory") {
    auto read = as<cmd::ReadMemory>(parse_command("mffffffff81000000,40"));
    CHECK(read.address == 0xffff'ffff'8100'0000ULL);
    CHECK(read.length == 0x40);
    auto hex = as<cmd::WriteMemory>(parse_command("M1000,2:cc90"));
    CHECK(hex.address == 0x1000);
    CHECK(hex.data == std::vector<uint8_t>{0xcc, 0x90});
    auto binary = as<cmd::WriteMemory>(parse_command(std::string("X1000,3:a\0:", 11)));
    CHECK(binary.data == std::vector<uint8_t>{'a', 0, ':'});
    CHECK(as<cmd::WriteMemory>(parse_command("X1000,0:")).data.empty());
    CHECK(as<cmd::ReadMemory>(parse_command("mffffffffffffffff,1")).length == 1);
}

TEST_CASE("gdb command: resuming") {
    auto c = as<cmd::Resume>(parse_command("c"));
    CHECK(c.kind == ResumeKind::Continue);
    CHECK_FALSE(c.has_address);
    auto s = as<cmd::Resume>(parse_command("s1000"));
    CHECK(s.kind == ResumeKind::Step);
    CHECK(s.address == 0x1000);
    CHECK(as<cmd::Resume>(parse_command("C05")).kind == ResumeKind::Continue);
    CHECK(as<cmd::Resume>(parse_command("S02;2000")).address == 0x2000);
    as<cmd::VContQuery>(parse_command("vCont?"));
    auto vcont = as<cmd::VCont>(parse_command("vCont;s:2;c"));
    REQUIRE(vcont.actions.size() == 2);
    CHECK(vcont.actions[0].kind == ResumeKind::Step);
    CHECK(vcont.actions[0].thread == one(2));
    CHECK(vcont.actions[1].kind == ResumeKind::Continue);
    CHECK(vcont.actions[1].thread == kAll);
    auto signalled = as<cmd::VCont>(parse_command("vCont;C02:1;S05:-1"));
    CHECK(signalled.actions[0].thread == one(1));
    CHECK(signalled.actions[1].kind == ResumeKind::Step);
    CHECK(signalled.actions[1].thread == kAll);
}

TEST_CASE("gdb command: breakpoints, threads, queries") {
    auto z = as<cmd::Breakpoint>(parse_command("Z0,ffffffff81234567,1"));
    CHECK(z.insert);
    CHECK(z.type == BreakpointType::Software);
    CHECK(z.address == 0xffff'ffff'8123'4567ULL);
    CHECK(z.kind == 1);
    auto w = as<cmd::Breakpoint>(parse_command("z4,1000,8"));
    CHECK_FALSE(w.insert);
    CHECK(w.type == BreakpointType::AccessWatch);
    CHECK(unknown("Z5,1000,1"));  // a type that does not exist: "not supported"

    auto hg = as<cmd::SelectThread>(parse_command("Hg0"));
    CHECK(hg.operation == 'g');
    CHECK(hg.thread == kAny);
    CHECK(as<cmd::SelectThread>(parse_command("Hc-1")).thread == kAll);
    CHECK(as<cmd::SelectThread>(parse_command("Hg1f")).thread == one(0x1f));
    CHECK(as<cmd::ThreadAlive>(parse_command("T2")).thread == one(2));
    as<cmd::ThreadInfoFirst>(parse_command("qfThreadInfo"));
    as<cmd::ThreadInfoNext>(parse_command("qsThreadInfo"));
    as<cmd::CurrentThread>(parse_command("qC"));
    CHECK(as<cmd::ThreadExtraInfo>(parse_command("qThreadExtraInfo,3")).thread == one(3));
    as<cmd::Attached>(parse_command("qAttached"));
    as<cmd::Attached>(parse_command("qAttached:1"));
    auto supported = as<cmd::Supported>(parse_command("qSupported:multiprocess+;swbreak+;hwbreak+;xmlRegisters=i386"));
    CHECK(supported.swbreak);
    CHECK(supported.hwbreak);
    CHECK_FALSE(as<cmd::Supported>(parse_command("qSupported")).swbreak);
    auto xfer = as<cmd::ReadFeatures>(parse_command("qXfer:features:read:target.xml:0,ffb"));
    CHECK(xfer.annex == "target.xml");
    CHECK(xfer.offset == 0);
    CHECK(xfer.length == 0xffb);
    as<cmd::StartNoAckMode>(parse_command("QStartNoAckMode"));
    as<cmd::Detach>(parse_command("D"));
    as<cmd::Detach>(parse_command("D;1"));
    CHECK_FALSE(as<cmd::Kill>(parse_command("k")).needs_reply);
    CHECK(as<cmd::Kill>(parse_command("vKill;1")).needs_reply);
}

TEST_CASE("gdb command: what minikvm does not implement is unknown (the empty reply)") {
    for (const char* payload : {"", "qOffsets", "qTStatus", "vMustReplyEmpty", "!", "QNonStop:1", "qSymbol::",
                                "qXfer:memory-map:read::0,100", "vFile:open:", "Hs1", "x1000,4", "bc"})
        CHECK(unknown(payload));
}

TEST_CASE("gdb command: hostile packets are errors, never crashes or huge allocations") {
    // Numbers past 64 bits, empty or non-hex fields, odd digit counts.
    CHECK(error_of("m10000000000000000,1") == kErrorInvalid);
    CHECK(error_of("m0,10000000000000000") == kErrorInvalid);
    CHECK(error_of("m,4") == kErrorInvalid);
    CHECK(error_of("m10") == kErrorInvalid);
    CHECK(error_of("mxyz,4") == kErrorInvalid);
    CHECK(error_of("G123") == kErrorInvalid);
    CHECK(error_of("G") == kErrorInvalid);
    CHECK(error_of("Gzz") == kErrorInvalid);
    CHECK(error_of("p") == kErrorInvalid);
    CHECK(error_of("P10") == kErrorInvalid);
    CHECK(error_of("P10=") == kErrorInvalid);
    CHECK(error_of("P10=123") == kErrorInvalid);
    // Lengths past one transfer, or ranges that wrap around 2^64.
    CHECK(error_of("m0,ffffffffffffffff") == kErrorTooBig);
    CHECK(error_of("m0,2001") == kErrorTooBig);
    CHECK(error_of("mffffffffffffffff,2") == kErrorTooBig);
    CHECK(error_of("M0,ffffffff:00") == kErrorTooBig);
    CHECK(error_of("X0,ffffffffffff:") == kErrorTooBig);
    // Data that does not match its length.
    CHECK(error_of("M0,2:00") == kErrorInvalid);
    CHECK(error_of("M0,1:0") == kErrorInvalid);
    CHECK(error_of("M0,1") == kErrorInvalid);
    CHECK(error_of("X0,2:a") == kErrorInvalid);
    CHECK(error_of("X0,1") == kErrorInvalid);
    // Missing fields and bad thread ids.
    CHECK(error_of("Z0,1000") == kErrorInvalid);
    CHECK(error_of("Z0") == kErrorInvalid);
    CHECK(error_of("Z0,1000,1;X2,ab") == kErrorInvalid);
    CHECK(error_of("Hg") == kErrorInvalid);
    CHECK(error_of("Hgp1.1") == kErrorInvalid);
    CHECK(error_of("Hg100000000") == kErrorInvalid);
    CHECK(error_of("Hg-2") == kErrorInvalid);
    CHECK(error_of("T") == kErrorInvalid);
    CHECK(error_of("qThreadExtraInfo,") == kErrorInvalid);
    CHECK(error_of("cxyz") == kErrorInvalid);
    CHECK(error_of("C") == kErrorInvalid);
    CHECK(error_of("C100") == kErrorInvalid);
    CHECK(error_of("S05;") == kErrorInvalid);
    CHECK(error_of("vCont;") == kErrorInvalid);
    CHECK(unknown("vCont"));
    CHECK(error_of("vCont;x") == kErrorInvalid);
    CHECK(error_of("vCont;t") == kErrorInvalid);
    CHECK(error_of("vCont;cc") == kErrorInvalid);
    CHECK(error_of("vCont;c:") == kErrorInvalid);
    CHECK(error_of("vCont;s:1;;c") == kErrorInvalid);
    CHECK(error_of("vCont;C:1") == kErrorInvalid);
    CHECK(error_of("qXfer:features:read:target.xml:0") == kErrorInvalid);
    CHECK(error_of("qXfer:features:read:target.xml") == kErrorInvalid);
    CHECK(error_of("qXfer:features:read:target.xml:,4") == kErrorInvalid);
    CHECK(error_of("?x") == kErrorInvalid);
    CHECK(error_of("gg") == kErrorInvalid);
    CHECK(error_of("Dx") == kErrorInvalid);
}
