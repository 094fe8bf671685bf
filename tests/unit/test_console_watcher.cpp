// The console watcher on real kernel output (tests/unit/fixtures): panics,
// oopses, WARNINGs, KASAN and hung-task reports, whole, split at every
// byte, interleaved with another console, and drowned in output.

#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "vmm/app/console_watcher.h"

using namespace minikvm;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

std::string fixture(const std::string& name) {
    std::ifstream in(std::string(MINIKVM_TEST_FIXTURES) + "/" + name, std::ios::binary);
    REQUIRE(in);
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

void feed(ConsoleWatcher& watcher, unsigned source, const std::string& text) {
    watcher.feed(source, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

uint32_t kinds(std::initializer_list<KernelReport> list) {
    uint32_t mask = 0;
    for (KernelReport kind : list) mask |= 1u << static_cast<unsigned>(kind);
    return mask;
}

}  // namespace

TEST_CASE("console watcher: the panic line, with and without timestamps, and its end marker", "[console-watcher]") {
    ConsoleWatcher minimal;
    feed(minimal, 0, fixture("panic-sysrq-minimal.txt"));
    REQUIRE(minimal.panic_line());
    CHECK(*minimal.panic_line() == "Kernel panic - not syncing: sysrq triggered crash");
    CHECK_FALSE(minimal.panic_complete());  // panic=-1: the reboot came before the end marker
    CHECK_FALSE(minimal.failure());         // nothing asked for
    REQUIRE(minimal.panic_report());
    CHECK_THAT(minimal.panic_report()->lines.front(), Contains("Kernel panic - not syncing: sysrq triggered crash"));
    CHECK(minimal.panic_report()->lines.size() > 5);  // the backtrace follows
    CHECK_FALSE(minimal.panic_report()->complete);

    ConsoleWatcher cloud;
    feed(cloud, 0, fixture("panic-sysrq-cloud.txt"));
    REQUIRE(cloud.panic_line());
    CHECK(*cloud.panic_line() == "Kernel panic - not syncing: sysrq triggered crash");
    CHECK(cloud.panic_complete());
    REQUIRE(cloud.panic_report());
    CHECK(cloud.panic_report()->complete);
    CHECK_THAT(cloud.panic_report()->lines.back(), Contains("---[ end Kernel panic - not syncing: sysrq triggered crash"));
}

TEST_CASE("console watcher: a WARNING is saved from its first line to its end marker", "[console-watcher]") {
    ConsoleWatcher watcher(kinds({KernelReport::Warn}));
    feed(watcher, 0, fixture("warn-lkdtm-minimal.txt"));
    REQUIRE(watcher.failure());
    const auto& report = *watcher.failure();
    CHECK(report.kind == KernelReport::Warn);
    CHECK(report.complete);
    // From the "cut here" line that opens it (a WARN()'s message would follow it).
    CHECK(report.lines.front() == "------------[ cut here ]------------");
    CHECK_THAT(report.lines[1], StartsWith("WARNING: CPU: 0 PID: 41 at drivers/misc/lkdtm/bugs.c:85"));
    CHECK_THAT(report.headline, StartsWith("WARNING: CPU: 0 PID: 41 at drivers/misc/lkdtm/bugs.c:85"));
    CHECK_THAT(report.lines.back(), StartsWith("---[ end trace "));
    CHECK_FALSE(watcher.panic_line());
    // Asked only for oopses, the same WARNING is no failure.
    ConsoleWatcher oops_only(kinds({KernelReport::Oops}));
    feed(oops_only, 0, fixture("warn-lkdtm-minimal.txt"));
    CHECK_FALSE(oops_only.failure());
}

TEST_CASE("console watcher: the cloud kernel's WARN() and oops, with timestamps, from the test module", "[console-watcher]") {
    ConsoleWatcher warn(kinds({KernelReport::Warn, KernelReport::Oops}));
    feed(warn, 0, fixture("warn-provoke-cloud.txt"));
    REQUIRE(warn.failure());
    CHECK(warn.failure()->kind == KernelReport::Warn);
    CHECK(warn.failure()->complete);
    // The WARN()'s message precedes its WARNING line: both are in the report.
    CHECK_THAT(warn.failure()->lines.at(0), Contains("------------[ cut here ]------------"));
    CHECK_THAT(warn.failure()->lines.at(1), Contains("minikvm-provoke: WARNING requested"));
    CHECK_THAT(warn.failure()->headline, StartsWith("WARNING: CPU: 0 PID: 110 at minikvm_provoke.c:53"));
    CHECK_THAT(warn.failure()->lines.back(), Contains("---[ end trace "));

    ConsoleWatcher oops(kinds({KernelReport::Oops}));
    feed(oops, 0, fixture("oops-provoke-cloud.txt"));
    REQUIRE(oops.failure());
    CHECK(oops.failure()->complete);
    CHECK_THAT(oops.failure()->lines.front(), Contains("BUG: kernel NULL pointer dereference, address: 0000000000000000"));
    CHECK(oops.failure()->headline == "BUG: kernel NULL pointer dereference, address: 0000000000000000");
    CHECK_THAT(oops.failure()->lines.back(), Contains("---[ end trace "));
}

TEST_CASE("console watcher: an oops starts at its BUG line, even when split at every byte", "[console-watcher]") {
    const std::string text = fixture("oops-lkdtm-minimal.txt");
    ConsoleWatcher whole(kinds({KernelReport::Oops}));
    feed(whole, 0, text);
    ConsoleWatcher bytewise(kinds({KernelReport::Oops}));
    for (char c : text) feed(bytewise, 0, std::string(1, c));
    for (const ConsoleWatcher* watcher : {&whole, &bytewise}) {
        REQUIRE(watcher->failure());
        const auto& report = *watcher->failure();
        CHECK(report.kind == KernelReport::Oops);
        CHECK(report.complete);
        CHECK(report.lines.front() == "BUG: kernel NULL pointer dereference, address: 0000000000000000");
        CHECK(report.headline == report.lines.front());
        CHECK_THAT(report.lines[4], StartsWith("Oops: 0002 [#1] SMP"));
        CHECK_THAT(report.lines.back(), StartsWith("---[ end trace "));
    }
    CHECK(whole.failure()->lines == bytewise.failure()->lines);
}

TEST_CASE("console watcher: KASAN ends at its closing banner, a hung task at its stack's end", "[console-watcher]") {
    ConsoleWatcher kasan(kinds({KernelReport::Kasan, KernelReport::Bug}));
    feed(kasan, 0, fixture("kasan-reconstructed.txt"));
    REQUIRE(kasan.failure());
    CHECK(kasan.failure()->kind == KernelReport::Kasan);  // not the generic "BUG:"
    CHECK(kasan.failure()->complete);
    CHECK_THAT(kasan.failure()->lines.back(), Contains("=================="));
    CHECK(kasan.failure()->lines.size() == 24);  // from the BUG line to the closing banner

    ConsoleWatcher hung(kinds({KernelReport::HungTask}));
    feed(hung, 0, fixture("hung-task-reconstructed.txt"));
    REQUIRE(hung.failure());
    CHECK(hung.failure()->kind == KernelReport::HungTask);
    CHECK(hung.failure()->complete);
    CHECK_THAT(hung.failure()->lines.back(), Contains("</TASK>"));
    CHECK(hung.failure()->lines.size() == 14);  // not the line after it

    // The real one (cloud kernel, test module), timestamps and all; the
    // detector's later reports of the same task are not appended.
    ConsoleWatcher real(kinds({KernelReport::HungTask}));
    feed(real, 0, fixture("hung-task-provoke-cloud.txt") + fixture("hung-task-provoke-cloud.txt"));
    REQUIRE(real.failure());
    CHECK(real.failure()->complete);
    CHECK(real.failure()->headline == "INFO: task init:110 blocked for more than 1 seconds.");
    CHECK(real.failure()->lines.size() == 32);
    CHECK_THAT(real.failure()->lines.back(), Contains("</TASK>"));
}

TEST_CASE("console watcher: consoles interleaved byte by byte keep their own lines", "[console-watcher]") {
    const std::string oops = fixture("oops-lkdtm-minimal.txt");
    const std::string chatter = std::string(4000, 'x') + "\nBUG: not really, a user program printing\n";
    ConsoleWatcher watcher(kinds({KernelReport::Oops, KernelReport::Bug}));
    for (size_t i = 0; i < std::max(oops.size(), chatter.size()); ++i) {
        if (i < oops.size()) feed(watcher, 0, oops.substr(i, 1));
        if (i < chatter.size()) feed(watcher, 1, chatter.substr(i, 1));
    }
    REQUIRE(watcher.failure());
    // The 8250's oops began first and is reported; the other console's
    // "BUG:" line, a separate line of its own, went into it only as a line.
    CHECK(watcher.failure()->kind == KernelReport::Oops);
    CHECK(watcher.failure()->lines.front() == "BUG: kernel NULL pointer dereference, address: 0000000000000000");
}

TEST_CASE("console watcher: --fail-on words", "[console-watcher]") {
    std::string bad;
    CHECK(parse_fail_on("oops,warn", bad) == kinds({KernelReport::Oops, KernelReport::Warn}));
    CHECK(parse_fail_on("hung-task", bad) == kinds({KernelReport::HungTask}));
    const auto all = parse_fail_on("all", bad);
    REQUIRE(all);
    CHECK((*all & kinds({KernelReport::Panic})) == 0);
    CHECK(*all == kinds({KernelReport::Oops, KernelReport::Bug, KernelReport::Warn, KernelReport::Kasan,
                         KernelReport::Ubsan, KernelReport::Lockdep, KernelReport::HungTask, KernelReport::SoftLockup,
                         KernelReport::RcuStall}));
    CHECK_FALSE(parse_fail_on("oops,panic", bad));
    CHECK(bad == "panic");
    CHECK_FALSE(parse_fail_on("oops,", bad));
    CHECK(bad.empty());
    CHECK(kernel_report_names() == "oops,bug,warn,kasan,ubsan,lockdep,hung-task,softlockup,rcu-stall");
}

TEST_CASE("console watcher: line classification", "[console-watcher]") {
    CHECK(strip_printk_timestamp("[    5.700539] Kernel panic") == "Kernel panic");
    CHECK(strip_printk_timestamp("[T1] x") == "[T1] x");
    CHECK(strip_printk_timestamp("[ bracket") == "[ bracket");
    CHECK(classify_report_line("watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [swapper/1:0]") ==
          KernelReport::SoftLockup);
    CHECK(classify_report_line("rcu: INFO: rcu_sched detected stalls on CPUs/tasks:") == KernelReport::RcuStall);
    CHECK(classify_report_line("WARNING: possible circular locking dependency detected") == KernelReport::Lockdep);
    CHECK(classify_report_line("UBSAN: shift-out-of-bounds in kernel/foo.c:12:5") == KernelReport::Ubsan);
    CHECK(classify_report_line("kernel BUG at mm/slub.c:400!") == KernelReport::Bug);
    CHECK(classify_report_line("general protection fault, probably for non-canonical address") == KernelReport::Oops);
    CHECK_FALSE(classify_report_line("  BUG: indented is not a report"));
    CHECK_FALSE(classify_report_line("MINIKVM-GUEST-READY cpus=1"));
}

TEST_CASE("console watcher: a flood stays bounded and quick", "[console-watcher]") {
    ConsoleWatcher watcher(kinds({KernelReport::Warn}));
    // 64 MiB: long lines (cut at kMaxLineBytes), short lines, no newline at all.
    const std::string long_line = std::string(100000, 'a') + "\n";
    const std::string short_lines = [] {
        std::string s;
        for (int i = 0; i < 1000; ++i) s += "[    1.000000] some driver: some message\n";
        return s;
    }();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 320; ++i) feed(watcher, 0, long_line);
    for (int i = 0; i < 800; ++i) feed(watcher, 1, short_lines);
    for (int i = 0; i < 320; ++i) feed(watcher, 0, std::string(100000, 'b'));  // one endless line
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(watcher.last_lines().size() == ConsoleWatcher::kLastLines);
    CHECK(watcher.last_lines().back().size() <= ConsoleWatcher::kMaxLineBytes);
    CHECK_FALSE(watcher.failure());
    INFO(watcher.bytes_seen() / seconds / 1e6 << " MB/s");
    CHECK(watcher.bytes_seen() > 60'000'000);
    // A report in a flood: the cap holds.
    feed(watcher, 0, "\nWARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x0\n");
    for (int i = 0; i < 1000; ++i) feed(watcher, 0, "more\n");
    REQUIRE(watcher.failure());
    CHECK(watcher.failure()->lines.size() == ConsoleWatcher::kMaxReportLines);
    CHECK_FALSE(watcher.failure()->complete);
}
