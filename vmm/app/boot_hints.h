#pragma once
// One hint for each common dead end of a Linux boot, so a CI log names the
// likely fix instead of leaving the user to guess whether the kernel config,
// the command line or the images are at fault. Pure: the facts come from
// the console watcher and the machine's configuration.

#include <optional>
#include <string>
#include <vector>

#include "vmm/app/console_watcher.h"
#include "vmm/app/machine_config.h"

namespace minikvm {

struct BootFacts {
    struct Disk {
        std::string device_name;  // "virtio-blk0"
        std::string path;
        bool driver_bound = false;  // the guest's driver reached DRIVER_OK
    };
    int exit_status = 0;
    bool any_output = false;
    // The first console line of each BootDeadEnd, as ConsoleWatcher::dead_end() gives it.
    std::optional<std::string> dead_ends[static_cast<size_t>(BootDeadEnd::Count)];
    std::string command_line;
    ConsoleMode console = ConsoleMode::Serial;
    std::optional<std::string> initrd_path;
    std::vector<Disk> disks;  // in --disk order
};

// The hints for a run that ended with `facts`, most specific first; none
// when the guest powered off or chose its exit code (odd).
std::vector<std::string> boot_failure_hints(const BootFacts& facts);

// The value of the last `NAME=` word of a kernel command line, if any.
std::optional<std::string> kernel_parameter(const std::string& command_line, const std::string& name);

// "exit status 1", "killed by signal 9" from the exit code of the kernel's
// "Attempted to kill init! exitcode=0x00000100" line; nullopt when the line has none.
std::optional<std::string> init_exit_description(const std::string& line);

}  // namespace minikvm
