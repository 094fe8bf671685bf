#include "vmm/app/boot_hints.h"

#include <fmt/format.h>

#include <cstdlib>

namespace minikvm {

namespace {

const std::optional<std::string>& line_of(const BootFacts& facts, BootDeadEnd kind) {
    return facts.dead_ends[static_cast<size_t>(kind)];
}

// "/dev/vdc" -> 2; nullopt for anything else (PARTUUID=, /dev/sda...).
std::optional<size_t> virtio_disk_index(const std::string& root) {
    const std::string prefix = "/dev/vd";
    if (root.compare(0, prefix.size(), prefix) != 0 || root.size() <= prefix.size()) return std::nullopt;
    const char letter = root[prefix.size()];
    if (letter < 'a' || letter > 'z') return std::nullopt;
    return static_cast<size_t>(letter - 'a');
}

std::string guest_disk_name(size_t index) {
    return index < 26 ? fmt::format("/dev/vd{}", static_cast<char>('a' + index)) : "a /dev/vd* name";
}

std::string root_mount_hint(const BootFacts& facts, const std::string& kernel_said) {
    const std::optional<std::string> root = kernel_parameter(facts.command_line, "root");
    std::string hint = fmt::format("the kernel could not mount its root filesystem (it said: {}). ", kernel_said);
    if (facts.initrd_path)
        hint += fmt::format("It only tries when the initramfs '{}' has no /init (or rdinit= names a missing file). ",
                            *facts.initrd_path);
    if (facts.disks.empty()) {
        hint += "No --disk was given, so there is nothing to mount: add --disk path=IMAGE with root=/dev/vda, or boot an "
                "initramfs (-i) with an executable /init";
        return hint;
    }
    hint += fmt::format("{} disk(s) attached:", facts.disks.size());
    for (size_t i = 0; i < facts.disks.size(); ++i) {
        const BootFacts::Disk& disk = facts.disks[i];
        hint += fmt::format(" {} '{}' (likely {}, {})", disk.device_name, disk.path, guest_disk_name(i),
                            disk.driver_bound ? "a driver bound it" : "no driver bound it");
        hint += i + 1 < facts.disks.size() ? ";" : ".";
    }
    bool any_bound = false;
    for (const BootFacts::Disk& disk : facts.disks) any_bound = any_bound || disk.driver_bound;
    if (!any_bound) {
        hint += " The kernel has no virtio-blk driver: build in CONFIG_VIRTIO_PCI and CONFIG_VIRTIO_BLK (=y), or load "
                "virtio_blk from an initramfs.";
    }
    if (!root) {
        hint += " The command line has no root=: add root=/dev/vda (the first --disk).";
    } else if (const auto index = virtio_disk_index(*root); index && *index >= facts.disks.size()) {
        hint += fmt::format(" root={} names a disk that is not attached: the disks are {}{}.", *root,
                            guest_disk_name(0), facts.disks.size() > 1 ? " to " + guest_disk_name(facts.disks.size() - 1) : "");
    } else {
        hint += fmt::format(" Check root={} (spelling, partition number) and that the kernel has the filesystem "
                            "built in (e.g. CONFIG_EXT4_FS=y).",
                            *root);
    }
    return hint;
}

}  // namespace

std::optional<std::string> kernel_parameter(const std::string& command_line, const std::string& name) {
    std::optional<std::string> value;
    const std::string key = name + "=";
    size_t at = 0;
    while (at < command_line.size()) {
        const size_t end = std::min(command_line.find(' ', at), command_line.size());
        const std::string word = command_line.substr(at, end - at);
        if (word.compare(0, key.size(), key) == 0) value = word.substr(key.size());
        at = end + 1;
    }
    return value;
}

std::optional<std::string> init_exit_description(const std::string& line) {
    const std::string key = "exitcode=";
    const size_t at = line.find(key);
    if (at == std::string::npos) return std::nullopt;
    const char* start = line.c_str() + at + key.size();
    char* end = nullptr;
    const unsigned long code = std::strtoul(start, &end, 0);
    if (end == start) return std::nullopt;
    // A wait status: the low 7 bits are the signal that killed init, else bits 8-15 its exit status.
    if ((code & 0x7f) != 0) return fmt::format("killed by signal {}", code & 0x7f);
    return fmt::format("exit status {}", (code >> 8) & 0xff);
}

std::vector<std::string> boot_failure_hints(const BootFacts& facts) {
    std::vector<std::string> hints;
    // A power-off, or an exit code the guest chose: the guest ended as it meant to.
    if (facts.exit_status == 0 || (facts.exit_status & 1) != 0) return hints;

    if (const auto& line = line_of(facts, BootDeadEnd::InitramfsUnpack)) {
        hints.push_back(fmt::format("the kernel could not unpack the initramfs{} (it said: {}): it must be a newc "
                                    "cpio archive, uncompressed or compressed with a method this kernel has "
                                    "(CONFIG_RD_GZIP, CONFIG_RD_ZSTD...)",
                                    facts.initrd_path ? " '" + *facts.initrd_path + "'" : "", *line));
    }
    if (const auto& line = line_of(facts, BootDeadEnd::RootMount)) hints.push_back(root_mount_hint(facts, *line));
    if (const auto& line = line_of(facts, BootDeadEnd::NoInit)) {
        hints.push_back(fmt::format("the kernel found no init it could run (it said: {}): an initramfs needs an "
                                    "executable /init (or rdinit=PATH), a root filesystem /sbin/init (or init=PATH); "
                                    "a script's interpreter and a program's libraries must be in the image too",
                                    *line));
    }
    if (const auto& line = line_of(facts, BootDeadEnd::InitKilled)) {
        const std::optional<std::string> how = init_exit_description(*line);
        hints.push_back(fmt::format("init (PID 1) {}, and the kernel cannot go on without it: end a test with "
                                    "poweroff -f, reboot -f or the debug-exit port (0xf4) instead of letting init exit",
                                    how ? "ended: " + *how : "ended"));
    }
    if (!facts.any_output) {
        const std::optional<std::string> console = kernel_parameter(facts.command_line, "console");
        const char* wanted = facts.console == ConsoleMode::Virtio ? "console=hvc0 (or console=ttyS0)" : "console=ttyS0";
        std::string hint = "the guest printed nothing on any console: ";
        hint += console ? fmt::format("the command line has console={}; ", *console)
                        : fmt::format("the command line has no console=; add {}; ", wanted);
        hint += "the kernel needs 8250 serial console support (CONFIG_SERIAL_8250_CONSOLE=y)";
        if (facts.console == ConsoleMode::Virtio) hint += " or a built-in virtio console (CONFIG_VIRTIO_CONSOLE=y)";
        hint += ", and earlyprintk=ttyS0 shows where an early boot stops";
        hints.push_back(std::move(hint));
    }
    return hints;
}

}  // namespace minikvm
