// The hints for a failed boot: each dead end the console watcher recognises
// gets its hint with the facts that make it useful (disks, root=, init's
// exit status), and a guest that ended as it meant to gets none.

#include <catch2/catch.hpp>

#include <string>

#include "vmm/app/boot_hints.h"
#include "vmm/app/console_watcher.h"

using namespace minikvm;
using Catch::Matchers::Contains;

namespace {

BootFacts failed_facts(int status = 18) {
    BootFacts facts;
    facts.exit_status = status;
    facts.any_output = true;
    facts.command_line = "console=ttyS0 panic=-1";
    return facts;
}

void see(BootFacts& facts, BootDeadEnd kind, std::string line) {
    facts.dead_ends[static_cast<size_t>(kind)] = std::move(line);
}

}  // namespace

TEST_CASE("dead ends: the kernel's own lines are classified", "[boot-hints]") {
    CHECK(classify_dead_end("VFS: Cannot open root device \"vdc\" or unknown-block(0,0): error -6") ==
          BootDeadEnd::RootMount);
    CHECK(classify_dead_end("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)") ==
          BootDeadEnd::RootMount);
    CHECK(classify_dead_end("Kernel panic - not syncing: No working init found.  Try passing init= option to kernel. "
                            "See Linux Documentation/admin-guide/init.rst for guidance.") == BootDeadEnd::NoInit);
    CHECK(classify_dead_end("Kernel panic - not syncing: Requested init /nope failed (error -2).") ==
          BootDeadEnd::NoInit);
    CHECK(classify_dead_end("Initramfs unpacking failed: junk within compressed archive") ==
          BootDeadEnd::InitramfsUnpack);
    CHECK(classify_dead_end("Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100") ==
          BootDeadEnd::InitKilled);
    CHECK_FALSE(classify_dead_end("Run /init as init process").has_value());
    CHECK_FALSE(classify_dead_end("Freeing unused kernel image (initmem) memory: 1024K").has_value());
}

TEST_CASE("dead ends: the watcher keeps the first line of each", "[boot-hints]") {
    ConsoleWatcher watcher;
    const std::string text =
        "[    0.912345] VFS: Cannot open root device \"vdc\" or unknown-block(0,0): error -6\r\n"
        "[    0.912400] Please append a correct \"root=\" boot option; here are the available partitions:\r\n"
        "[    0.912500] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n";
    watcher.feed(0, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    REQUIRE(watcher.dead_end(BootDeadEnd::RootMount));
    CHECK(*watcher.dead_end(BootDeadEnd::RootMount) ==
          "VFS: Cannot open root device \"vdc\" or unknown-block(0,0): error -6");
    CHECK_FALSE(watcher.dead_end(BootDeadEnd::NoInit));
}

TEST_CASE("boot hints: none when the guest powered off or chose its exit code", "[boot-hints]") {
    for (int status : {0, 1, 85}) {
        BootFacts facts = failed_facts(status);
        facts.any_output = false;
        see(facts, BootDeadEnd::NoInit, "Kernel panic - not syncing: No working init found.");
        CHECK(boot_failure_hints(facts).empty());
    }
}

TEST_CASE("boot hints: root= naming a disk that is not attached", "[boot-hints]") {
    BootFacts facts = failed_facts();
    facts.command_line = "console=ttyS0 root=/dev/vdc rdinit=/nope";
    facts.initrd_path = "initrd.cpio";
    facts.disks = {{"virtio-blk0", "a.img", true}, {"virtio-blk1", "b.img", true}};
    see(facts, BootDeadEnd::RootMount, "VFS: Cannot open root device \"vdc\" or unknown-block(0,0): error -6");
    const auto hints = boot_failure_hints(facts);
    REQUIRE(hints.size() == 1);
    CHECK_THAT(hints[0], Contains("could not mount its root filesystem"));
    CHECK_THAT(hints[0], Contains("error -6"));
    CHECK_THAT(hints[0], Contains("the initramfs 'initrd.cpio' has no /init"));
    CHECK_THAT(hints[0], Contains("virtio-blk0 'a.img' (likely /dev/vda, a driver bound it)"));
    CHECK_THAT(hints[0], Contains("virtio-blk1 'b.img' (likely /dev/vdb, a driver bound it)"));
    CHECK_THAT(hints[0], Contains("root=/dev/vdc names a disk that is not attached: the disks are /dev/vda to /dev/vdb"));
}

TEST_CASE("boot hints: root mount without disks, without root=, without a driver", "[boot-hints]") {
    BootFacts facts = failed_facts();
    see(facts, BootDeadEnd::RootMount, "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)");
    CHECK_THAT(boot_failure_hints(facts).at(0), Contains("No --disk was given"));

    facts.disks = {{"virtio-blk0", "a.img", false}};
    const std::string hint = boot_failure_hints(facts).at(0);
    CHECK_THAT(hint, Contains("no driver bound it"));
    CHECK_THAT(hint, Contains("CONFIG_VIRTIO_BLK"));
    CHECK_THAT(hint, Contains("has no root=: add root=/dev/vda"));

    facts.disks[0].driver_bound = true;
    facts.command_line = "root=/dev/vda1 console=ttyS0";
    CHECK_THAT(boot_failure_hints(facts).at(0), Contains("Check root=/dev/vda1"));
}

TEST_CASE("boot hints: no init, initramfs unpacking, init exiting", "[boot-hints]") {
    BootFacts facts = failed_facts();
    facts.initrd_path = "bad.cpio";
    see(facts, BootDeadEnd::InitramfsUnpack, "Initramfs unpacking failed: junk within compressed archive");
    see(facts, BootDeadEnd::NoInit, "Kernel panic - not syncing: No working init found.");
    see(facts, BootDeadEnd::InitKilled, "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300");
    const auto hints = boot_failure_hints(facts);
    REQUIRE(hints.size() == 3);
    CHECK_THAT(hints[0], Contains("could not unpack the initramfs 'bad.cpio'"));
    CHECK_THAT(hints[0], Contains("junk within compressed archive"));
    CHECK_THAT(hints[1], Contains("found no init"));
    CHECK_THAT(hints[2], Contains("init (PID 1) ended: exit status 3"));
}

TEST_CASE("boot hints: init's wait status decoded", "[boot-hints]") {
    CHECK(init_exit_description("Attempted to kill init! exitcode=0x00000100") == "exit status 1");
    CHECK(init_exit_description("Attempted to kill init! exitcode=0x00000009") == "killed by signal 9");
    CHECK(init_exit_description("Attempted to kill init! exitcode=0x00000000") == "exit status 0");
    CHECK_FALSE(init_exit_description("Attempted to kill init!").has_value());
    CHECK_FALSE(init_exit_description("exitcode=zz").has_value());
}

TEST_CASE("boot hints: a silent guest gets the console hint", "[boot-hints]") {
    BootFacts facts = failed_facts(20);
    facts.any_output = false;
    facts.command_line = "panic=-1";
    auto hints = boot_failure_hints(facts);
    REQUIRE(hints.size() == 1);
    CHECK_THAT(hints[0], Contains("printed nothing on any console"));
    CHECK_THAT(hints[0], Contains("no console=; add console=ttyS0"));
    facts.command_line = "console=tty0";
    facts.console = ConsoleMode::Virtio;
    hints = boot_failure_hints(facts);
    CHECK_THAT(hints.at(0), Contains("the command line has console=tty0"));
    CHECK_THAT(hints.at(0), Contains("CONFIG_VIRTIO_CONSOLE"));
}

TEST_CASE("kernel_parameter: the last word with the name wins", "[boot-hints]") {
    CHECK(kernel_parameter("root=/dev/vda ro root=/dev/vdb", "root") == "/dev/vdb");
    CHECK(kernel_parameter("rdroot=x", "root") == std::nullopt);
    CHECK(kernel_parameter("", "root") == std::nullopt);
    CHECK(kernel_parameter("console=", "console") == "");
}
