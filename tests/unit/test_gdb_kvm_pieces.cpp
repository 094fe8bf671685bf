// The pure parts under the KVM gdb target: DR7 encoding and slot
// bookkeeping, --gdb address parsing, and the all-stop gate's threading.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

#include "vmm/backends/gdb/gdb_address.h"
#include "vmm/backends/gdb/x86_debug_registers.h"
#include "vmm/core/vcpu_gate.h"

using namespace minikvm;
using namespace minikvm::gdb;

TEST_CASE("DR7: an instruction breakpoint is RW 00, LEN 00, locally enabled") {
    X86DebugRegisters dr;
    REQUIRE(dr.insert(BreakpointType::Hardware, 0xffffffff81000000, 1) == X86DebugRegisters::Result::Ok);
    CHECK(dr.addresses()[0] == 0xffffffff81000000);
    CHECK(dr.dr7() == (1ULL | (1ULL << 9)));
    CHECK(dr.has_instruction_breakpoint(0xffffffff81000000));
    // Stepping off it leaves it out.
    CHECK(dr.dr7(0xffffffff81000000) == 0);
}

TEST_CASE("DR7: watchpoints take the next free slot with their RW and LEN bits") {
    X86DebugRegisters dr;
    REQUIRE(dr.insert(BreakpointType::Hardware, 0x1000, 1) == X86DebugRegisters::Result::Ok);
    REQUIRE(dr.insert(BreakpointType::WriteWatch, 0x2000, 4) == X86DebugRegisters::Result::Ok);
    REQUIRE(dr.insert(BreakpointType::AccessWatch, 0x3000, 8) == X86DebugRegisters::Result::Ok);
    REQUIRE(dr.insert(BreakpointType::WriteWatch, 0x4002, 2) == X86DebugRegisters::Result::Ok);
    const uint64_t want = 0x55 | (1ULL << 9) |
                          (0b1101ULL << 20) |   // slot 1: write, 4 bytes (LEN 11)
                          (0b1011ULL << 24) |   // slot 2: access, 8 bytes (LEN 10)
                          (0b0101ULL << 28);    // slot 3: write, 2 bytes (LEN 01)
    CHECK(dr.dr7() == want);
    CHECK(dr.insert(BreakpointType::Hardware, 0x5000, 1) == X86DebugRegisters::Result::NoRoom);
    auto hit = dr.hit(0xffff0ff4);  // B2
    REQUIRE(hit);
    CHECK(hit->type == BreakpointType::AccessWatch);
    CHECK(hit->address == 0x3000);
    CHECK_FALSE(dr.hit(0xffff4ff0));  // BS only: a step, no slot
    CHECK(dr.remove(BreakpointType::AccessWatch, 0x3000, 8));
    CHECK_FALSE(dr.remove(BreakpointType::AccessWatch, 0x3000, 8));
    CHECK(dr.insert(BreakpointType::Hardware, 0x5000, 1) == X86DebugRegisters::Result::Ok);
}

TEST_CASE("DR7: an unaligned or odd-sized range is split into aligned pieces") {
    using Pieces = std::vector<std::pair<uint64_t, uint64_t>>;
    CHECK(watch_pieces(0x1001, 3) == Pieces{{0x1001, 1}, {0x1002, 2}});
    CHECK(watch_pieces(0x1000, 16) == Pieces{{0x1000, 8}, {0x1008, 8}});
    CHECK(watch_pieces(0x1006, 4) == Pieces{{0x1006, 2}, {0x1008, 2}});
    X86DebugRegisters dr;
    REQUIRE(dr.insert(BreakpointType::WriteWatch, 0x1001, 3) == X86DebugRegisters::Result::Ok);
    auto hit = dr.hit(1ULL << 1);  // the second piece reports the whole range
    REQUIRE(hit);
    CHECK(hit->address == 0x1001);
    CHECK(dr.remove(BreakpointType::WriteWatch, 0x1001, 3));
    CHECK(dr.empty());
}

TEST_CASE("DR7: what x86 cannot do is refused") {
    X86DebugRegisters dr;
    CHECK(dr.insert(BreakpointType::ReadWatch, 0x1000, 4) == X86DebugRegisters::Result::Unsupported);
    CHECK(dr.insert(BreakpointType::WriteWatch, 0x1000, 0) == X86DebugRegisters::Result::Invalid);
    CHECK(dr.insert(BreakpointType::WriteWatch, 0x1000, 1000) == X86DebugRegisters::Result::Invalid);
    CHECK(dr.insert(BreakpointType::WriteWatch, ~0ULL - 1, 4) == X86DebugRegisters::Result::Invalid);
    // More pieces than slots: nothing is half inserted.
    CHECK(dr.insert(BreakpointType::WriteWatch, 0x1001, 30) == X86DebugRegisters::Result::NoRoom);
    CHECK(dr.empty());
}

TEST_CASE("--gdb addresses: loopback unless a host is given") {
    std::string error;
    auto a = parse_gdb_address("tcp::1234", error);
    REQUIRE(a);
    CHECK(a->host == "127.0.0.1");
    CHECK(a->port == 1234);
    CHECK(a->text() == "tcp:127.0.0.1:1234");
    CHECK(parse_gdb_address("tcp:localhost:1", error)->host == "127.0.0.1");
    CHECK(parse_gdb_address("tcp:0.0.0.0:1234", error)->host == "0.0.0.0");
    auto v6 = parse_gdb_address("tcp:[::1]:5", error);
    REQUIRE(v6);
    CHECK(v6->text() == "tcp:[::1]:5");
    auto u = parse_gdb_address("unix:gdb.sock", error);
    REQUIRE(u);
    CHECK(u->kind == GdbAddress::Kind::Unix);
    CHECK(u->path == "gdb.sock");
    CHECK(parse_gdb_address("/tmp/x.sock", error)->path == "/tmp/x.sock");
    for (const char* bad : {"1234", "tcp:1234", "tcp::", "tcp::65536", "tcp::-1", "tcp:host.example:1",
                            "tcp:[nope]:1", "unix:", "localhost:1234"}) {
        INFO(bad);
        error.clear();
        CHECK_FALSE(parse_gdb_address(bad, error));
        CHECK_FALSE(error.empty());
    }
    CHECK_FALSE(parse_gdb_address("unix:/" + std::string(200, 'x'), error));
}

TEST_CASE("VcpuGate: close parks every vCPU; open lets the chosen ones run") {
    constexpr size_t kVcpus = 3;
    VcpuGate gate(kVcpus, false);
    std::atomic<bool> stop{false};
    std::vector<std::atomic<uint64_t>> runs(kVcpus);
    gate.set_kick([](size_t) {});
    std::vector<std::thread> threads;
    for (size_t i = 0; i < kVcpus; ++i)
        threads.emplace_back([&, i] {
            while (!stop) {
                gate.pass(i);
                ++runs[i];
                std::this_thread::yield();
            }
        });
    CHECK(gate.close());
    CHECK_FALSE(gate.close());  // one closer
    REQUIRE(gate.wait_parked());
    std::vector<uint64_t> before;
    for (auto& r : runs) before.push_back(r.load());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    for (size_t i = 0; i < kVcpus; ++i) CHECK(runs[i].load() == before[i]);
    // Step vCPU 1 alone.
    gate.open({false, true, false});
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(runs[0].load() == before[0]);
    CHECK(runs[1].load() > before[1]);
    CHECK(runs[2].load() == before[2]);
    CHECK(gate.close());
    REQUIRE(gate.wait_parked());
    gate.open_all();
    stop = true;
    gate.shut_down();
    CHECK_FALSE(gate.wait_parked());
    for (auto& t : threads) t.join();
}

TEST_CASE("VcpuGate: a gate made closed holds vCPUs before their first run; shut_down frees them") {
    VcpuGate gate(2, true);
    std::atomic<int> passed{0};
    std::vector<std::thread> threads;
    for (size_t i = 0; i < 2; ++i) threads.emplace_back([&, i] {
        gate.pass(i);
        ++passed;
    });
    REQUIRE(gate.wait_parked());
    CHECK(passed == 0);
    gate.shut_down();
    for (auto& t : threads) t.join();
    CHECK(passed == 2);
}
