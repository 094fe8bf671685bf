#pragma once
// What the user asked for: the product of the command line, the input of
// Machine and of the virtio device registry.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/backends/block/disk_config.h"
#include "vmm/backends/gdb/gdb_address.h"
#include "vmm/backends/net/net_config.h"
#include "vmm/backends/p9/share_config.h"
#include "vmm/backends/vfio/host_pci_address.h"
#include "vmm/core/trace_flags.h"

namespace minikvm {

// Which device the host terminal (stdin/stdout) is wired to. The 8250 is
// always there; with `Virtio` it still prints (early boot messages) but input
// goes to virtio-console; with `None` the guest's output is discarded and it
// gets no input.
enum class ConsoleMode { Serial, Virtio, None };

struct MachineConfig {
    std::string kernel_path;
    std::optional<std::string> initrd_path;
    std::string command_line;
    uint32_t cpus = 1;
    uint64_t memory_bytes = 256ULL << 20;
    ConsoleMode console = ConsoleMode::Serial;
    TraceFlags trace;
    std::vector<DiskConfig> disks;  // virtio-blk0, virtio-blk1... in this order
    std::vector<NetConfig> nets;    // virtio-net0, virtio-net1... in this order, after the disks
    bool rng = false;               // virtio-rng0, after the network cards
    std::vector<ShareConfig> shares;  // virtio-9p0, virtio-9p1... after virtio-rng
    // --exec: boot into minikvm's own init, which runs `command` against the
    // host's files (the root share, ro, is shares' last entry) and reports
    // its status (vmm/app/exec_session.h).
    struct Exec {
        std::string command;
    };
    std::optional<Exec> exec;
    // Host PCI functions to assign (--vfio-pci), after the virtio devices;
    // `option` is what the user typed, for messages.
    struct AssignedDevice {
        std::string option;
        HostPciAddress address;
    };
    std::vector<AssignedDevice> vfio_devices;
    // MSI-X capability on every virtio device; off: INTx only (--msix off).
    bool msix = true;
    // Adaptive device-side polling (vmm/core/event_loop.h): the longest
    // window the event loop polls its devices after work; 0: no polling.
    static constexpr std::chrono::nanoseconds kDefaultPollWindow{200'000};
    std::chrono::nanoseconds poll_window = kDefaultPollWindow;
    // Verdicts (vmm/app/console_watcher.h): end with ExitCode::Timeout when
    // this runs out; the KernelReport kinds (bits) that make the exit
    // status ExitCode::KernelReport; a file that gets every console byte.
    std::optional<std::chrono::milliseconds> timeout;
    uint32_t fail_on = 0;
    std::optional<std::string> console_log_path;
    // --gdb: a GDB remote-protocol server (vmm/backends/gdb/gdb_server.h);
    // --gdb-wait: every vCPU held before its first instruction until gdb
    // lets it run.
    std::optional<gdb::GdbAddress> gdb;
    bool gdb_wait = false;
};

}  // namespace minikvm
