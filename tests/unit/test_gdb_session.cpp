#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "tests/unit/fake_gdb_target.h"
#include "vmm/backends/gdb/gdb_hex.h"
#include "vmm/backends/gdb/gdb_session.h"
#include "vmm/backends/gdb/x86_target_xml.h"

using namespace minikvm::gdb;

namespace {

// gdb's side of the conversation.
struct Rig {
    FakeGdbTarget target;
    GdbSession session{target, StopEvent{1, StopReason::Halted}};

    // Sends one packet; returns everything the session wrote back.
    std::string raw(std::string_view payload) {
        std::string out;
        session.receive(encode_packet(payload), out);
        return out;
    }
    // Sends one packet; returns the payload of the one reply (checking the ack).
    std::string ask(std::string_view payload) {
        std::string out = raw(payload);
        INFO("sent " << std::string(payload) << ", got " << out);
        if (session.acknowledging()) {
            REQUIRE(!out.empty());
            REQUIRE(out.front() == '+');
            out.erase(0, 1);
        }
        return only_packet(out);
    }
    static std::string only_packet(const std::string& bytes) {
        PacketDecoder decoder;
        std::vector<InputEvent> events;
        decoder.feed(bytes, events);
        REQUIRE(events.size() == 1);
        REQUIRE(events[0].kind == InputEvent::Kind::Packet);
        return events[0].payload;
    }
    // The target stops (all-stop) and says why.
    std::string stop(StopEvent event) {
        target.stop();
        std::string out;
        session.stopped(event, out);
        return only_packet(out);
    }
};

std::string hex_of(std::span<const uint8_t> bytes) { return hex_bytes(bytes); }

}  // namespace

TEST_CASE("gdb session: the handshake gdb makes on connect") {
    Rig rig;
    std::string supported = rig.ask("qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+");
    CHECK(supported.find("PacketSize=4000") != std::string::npos);
    CHECK(supported.find("qXfer:features:read+") != std::string::npos);
    CHECK(supported.find("QStartNoAckMode+") != std::string::npos);
    CHECK(supported.find("multiprocess") == std::string::npos);
    CHECK(rig.ask("vMustReplyEmpty") == "");
    CHECK(rig.ask("Hg0") == "OK");
    CHECK(rig.ask("?") == "T05thread:1;");
    CHECK(rig.ask("qfThreadInfo") == "m1,2");
    CHECK(rig.ask("qsThreadInfo") == "l");
    CHECK(rig.ask("qC") == "QC1");
    CHECK(rig.ask("qAttached") == "1");
    CHECK(rig.ask("qOffsets") == "");
    CHECK(rig.ask("qThreadExtraInfo,2") == hex_of(std::span(reinterpret_cast<const uint8_t*>("vCPU 1"), 6)));
    CHECK(rig.ask("T2") == "OK");
    CHECK(rig.ask("T3") == "E03");
}

TEST_CASE("gdb session: the target description, in pieces") {
    Rig rig;
    std::string xml;
    for (uint64_t offset = 0;;) {
        std::string query = "qXfer:features:read:target.xml:";
        append_hex_number(query, offset);
        query += ",100";
        std::string reply = rig.ask(query);
        REQUIRE(!reply.empty());
        xml += reply.substr(1);
        offset += reply.size() - 1;
        if (reply.front() == 'l') break;
        REQUIRE(reply.front() == 'm');
    }
    CHECK(xml == x86_target_xml());
    CHECK(rig.ask("qXfer:features:read:target.xml:ffffff,100") == "l");
    CHECK(rig.ask("qXfer:features:read:other.xml:0,100") == "E00");
    // A length past the packet size is cut to what fits.
    std::string big = rig.ask("qXfer:features:read:target.xml:0,ffffffffffffffff");
    CHECK(big.size() <= kMaxPacketSize / 2 + 1);
}

TEST_CASE("gdb session: registers of the selected thread") {
    Rig rig;
    std::string all = rig.ask("g");
    CHECK(all.size() == 2 * X86RegisterFile::kBytes);
    CHECK(all.substr(0, 16) == "0100000000000000");    // rax of thread 1
    CHECK(all.substr(256, 16) == "0010000000000000");  // rip
    CHECK(rig.ask("Hg2") == "OK");
    CHECK(rig.ask("g").substr(0, 16) == "0200000000000000");
    CHECK(rig.ask("p10") == "0020000000000000");
    CHECK(rig.ask("P10=efbeadde00000000") == "OK");
    CHECK(rig.target.registers[2].get(X86Reg::Rip) == 0xdeadbeef);
    CHECK(rig.target.registers[1].get(X86Reg::Rip) == 0x1000);
    CHECK(rig.ask("p11") == "00000000");  // eflags: four bytes
    CHECK(rig.ask("p40") == "0000000000000000");  // efer, the last
    CHECK(rig.ask("p41") == "E16");
    CHECK(rig.ask("P11=0000000000000000") == "E16");  // eight bytes for a four-byte register
    CHECK(rig.ask("Hg9") == "E03");

    std::string image = rig.ask("g");
    image.replace(0, 16, "2a00000000000000");
    CHECK(rig.ask("G" + image) == "OK");
    CHECK(rig.target.registers[2].get(X86Reg::Rax) == 42);
    CHECK(rig.ask("G" + image.substr(2)) == "E16");
    CHECK(rig.ask("G" + image + "00") == "E16");
}

TEST_CASE("gdb session: memory reads and writes, whole, partial and unmapped") {
    Rig rig;
    CHECK(rig.ask("m1000,4") == "00010203");
    CHECK(rig.ask("m2ffe,4") == "feff");  // the window ends at 0x3000
    CHECK(rig.ask("m3000,4") == "E0e");
    CHECK(rig.ask("m1000,0") == "E16");
    CHECK(rig.ask("m1000,2001") == "E22");
    CHECK(rig.ask("M1000,2:cc90") == "OK");
    CHECK(rig.target.memory[0] == 0xcc);
    CHECK(rig.ask("M2fff,2:cc90") == "E0e");
    // X carries raw bytes; the escaped ones ($ # } *) arrive as themselves.
    std::string binary = "X1100,5:";
    binary += std::string("$#}*\0", 5);
    CHECK(rig.ask(binary) == "OK");
    CHECK(rig.ask("m1100,5") == "24237d2a00");
    CHECK(rig.ask("X0,0:") == "OK");  // gdb's probe for X support
}

TEST_CASE("gdb session: vCont steps one thread and continues the others") {
    Rig rig;
    CHECK(rig.ask("vCont?") == "vCont;c;C;s;S");
    CHECK(rig.raw("vCont;s:2;c") == "+");  // no reply until the target stops
    CHECK(rig.session.state() == GdbSession::State::Running);
    REQUIRE(rig.target.last_resume.size() == 2);
    CHECK(rig.target.last_resume[0] == ThreadAction{1, ThreadAction::Kind::Continue});
    CHECK(rig.target.last_resume[1] == ThreadAction{2, ThreadAction::Kind::Step});
    // While running, commands are not answered (all-stop) and the target is not touched.
    CHECK(rig.raw("g") == "+");
    CHECK(rig.stop({2, StopReason::SingleStep}) == "T05thread:2;");
    CHECK(rig.ask("?") == "T05thread:2;");
    CHECK(rig.ask("qC") == "QC2");

    // Scheduler locking: only thread 1 steps; the rest stay.
    rig.raw("vCont;s:1");
    CHECK(rig.target.last_resume[0] == ThreadAction{1, ThreadAction::Kind::Step});
    CHECK(rig.target.last_resume[1] == ThreadAction{2, ThreadAction::Kind::Stay});
    rig.stop({1, StopReason::SingleStep});
    // "Any" thread is the current one; the first matching action wins.
    rig.raw("vCont;s:0;s:2;c");
    CHECK(rig.target.last_resume[0] == ThreadAction{1, ThreadAction::Kind::Step});
    CHECK(rig.target.last_resume[1] == ThreadAction{2, ThreadAction::Kind::Step});
    rig.stop({1, StopReason::SingleStep});
    CHECK(rig.ask("vCont;c:9") == "E03");
    CHECK(rig.ask("vCont;c:9;c") == "E03");
    CHECK(rig.session.state() == GdbSession::State::Stopped);
}

TEST_CASE("gdb session: legacy c and s follow Hc") {
    Rig rig;
    rig.raw("c");
    CHECK(rig.target.last_resume[0].kind == ThreadAction::Kind::Continue);
    CHECK(rig.target.last_resume[1].kind == ThreadAction::Kind::Continue);
    rig.stop({1, StopReason::HardwareBreakpoint});
    CHECK(rig.ask("Hc2") == "OK");
    rig.raw("s4000");
    CHECK(rig.target.registers[2].get(X86Reg::Rip) == 0x4000);
    CHECK(rig.target.last_resume[0] == ThreadAction{1, ThreadAction::Kind::Stay});
    CHECK(rig.target.last_resume[1] == ThreadAction{2, ThreadAction::Kind::Step});
    rig.stop({2, StopReason::SingleStep});
    rig.raw("C02");
    CHECK(rig.session.state() == GdbSession::State::Running);
}

TEST_CASE("gdb session: Ctrl-C interrupts a running target, and only then") {
    Rig rig;
    std::string out;
    rig.session.receive(std::string_view("\x03"), out);
    CHECK(rig.target.interrupts == 0);
    CHECK(out.empty());
    rig.raw("c");
    rig.session.receive(std::string_view("\x03"), out);
    CHECK(rig.target.interrupts == 1);
    CHECK(rig.stop({2, StopReason::Interrupted}) == "T02thread:2;");
    // A stop nobody asked for (not running) is not sent.
    std::string stray;
    rig.session.stopped({1, StopReason::SingleStep}, stray);
    CHECK(stray.empty());
}

TEST_CASE("gdb session: stop replies name breakpoints and watchpoints") {
    Rig rig;
    rig.raw("c");
    CHECK(rig.stop({1, StopReason::SoftwareBreakpoint}) == "T05thread:1;");  // gdb did not offer swbreak
    rig.ask("qSupported:swbreak+;hwbreak+");
    rig.raw("c");
    CHECK(rig.stop({1, StopReason::SoftwareBreakpoint}) == "T05thread:1;swbreak:;");
    rig.raw("c");
    CHECK(rig.stop({2, StopReason::HardwareBreakpoint}) == "T05thread:2;hwbreak:;");
    rig.raw("c");
    CHECK(rig.stop({1, StopReason::Watchpoint, BreakpointType::WriteWatch, 0xffff8880001000}) ==
          "T05thread:1;watch:ffff8880001000;");
    rig.raw("c");
    CHECK(rig.stop({1, StopReason::Watchpoint, BreakpointType::ReadWatch, 0x10}) == "T05thread:1;rwatch:10;");
    rig.raw("c");
    CHECK(rig.stop({1, StopReason::Watchpoint, BreakpointType::AccessWatch, 0x10}) == "T05thread:1;awatch:10;");
}

TEST_CASE("gdb session: breakpoints are idempotent, bounded and removed on detach") {
    Rig rig;
    CHECK(rig.ask("Z0,1000,1") == "OK");
    CHECK(rig.ask("Z0,1000,1") == "OK");
    CHECK(rig.target.breakpoint_calls == 1);
    CHECK(rig.ask("Z0,9000,1") == "E01");  // the target refused (not mapped)
    CHECK(rig.ask("Z3,1000,4") == "");     // not supported by the target: gdb may fall back
    for (int i = 0; i < 4; ++i) CHECK(rig.ask("Z2,200" + std::to_string(i) + ",1") == "OK");
    CHECK(rig.ask("Z1,1000,1") == "E01");  // a fifth debug register
    CHECK(rig.ask("z2,2000,1") == "OK");
    CHECK(rig.ask("z2,2000,1") == "OK");   // already gone
    CHECK(rig.ask("Z1,1000,1") == "OK");
    CHECK(rig.target.inserted.size() == 5);
    CHECK(rig.ask("D") == "OK");
    CHECK(rig.target.inserted.empty());
    CHECK(rig.target.detached);
    CHECK(rig.session.state() == GdbSession::State::Detached);
    CHECK(rig.raw("g").empty());  // nothing more is answered
}

TEST_CASE("gdb session: at most kMaxBreakpoints are remembered") {
    Rig rig;
    rig.raw("QStartNoAckMode");
    for (size_t i = 0; i < GdbSession::kMaxBreakpoints; ++i) {
        std::string z = "Z0,";
        append_hex_number(z, FakeGdbTarget::kMemoryBase + i);
        REQUIRE(rig.ask(z + ",1") == "OK");
    }
    CHECK(rig.ask("Z0,1fff,1") == "E22");
}

TEST_CASE("gdb session: a disconnect without D detaches the same way") {
    Rig rig;
    rig.ask("Z0,1000,1");
    rig.session.disconnected();
    CHECK(rig.target.inserted.empty());
    CHECK(rig.target.detached);
    CHECK_FALSE(rig.target.killed);
}

TEST_CASE("gdb session: kill, and the guest's exit") {
    Rig k;
    CHECK(k.raw("k") == "+");  // k has no reply
    CHECK(k.target.killed);
    CHECK(k.session.state() == GdbSession::State::Killed);
    Rig vkill;
    CHECK(vkill.ask("vKill;1") == "OK");
    CHECK(vkill.target.killed);

    Rig exiting;
    exiting.raw("c");
    exiting.target.stop();
    std::string out;
    exiting.session.exited(20, out);
    CHECK(out == encode_packet("W14"));
    CHECK(exiting.session.state() == GdbSession::State::Exited);
}

TEST_CASE("gdb session: acknowledgements, retransmission and no-ack mode") {
    Rig rig;
    std::string out;
    rig.session.receive(std::string_view("$g#00"), out);  // bad checksum
    CHECK(out == "-");
    out.clear();
    std::string first = rig.raw("qC");
    CHECK(first == "+" + encode_packet("QC1"));
    rig.session.receive(std::string_view("-"), out);  // gdb did not get it
    CHECK(out == encode_packet("QC1"));
    CHECK(rig.raw("QStartNoAckMode") == "+" + encode_packet("OK"));
    out.clear();
    rig.session.receive(std::string_view("+") , out);  // gdb acknowledges that OK, then stops
    CHECK(out.empty());
    CHECK(rig.raw("qC") == encode_packet("QC1"));
    rig.session.receive(std::string_view("$g#00-"), out);
    CHECK(out.empty());  // no-ack mode: no `-`, no retransmission
}

TEST_CASE("gdb session: hostile input gets error replies") {
    Rig rig;
    CHECK(rig.ask("m0,ffffffffffffffff") == "E22");
    CHECK(rig.ask("mzz,1") == "E16");
    CHECK(rig.ask("Hgp1.2") == "E16");
    CHECK(rig.ask("vCont;x") == "E16");
    CHECK(rig.ask("Z0,,") == "E16");
    CHECK(rig.ask("X1000,ffffffffffffffff:") == "E22");
    // A packet past PacketSize: acknowledged, refused, and the stream goes on.
    std::string out;
    rig.session.receive(encode_packet(std::string(kMaxPacketSize + 10, 'M')) + encode_packet("qC"), out);
    CHECK(out == "+" + encode_packet("E22") + "+" + encode_packet("QC1"));
}
