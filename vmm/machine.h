#pragma once
// One virtual machine: KVM objects, guest RAM, the PC devices, the loaded
// Linux kernel and the vCPU threads. Construction does every check that can
// fail because of user input, so errors surface before any vCPU runs.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "devices/acpi_pm.h"
#include "devices/cmos_rtc.h"
#include "devices/debug_exit.h"
#include "devices/i8042.h"
#include "devices/irq_line.h"
#include "devices/pci_host_bridge.h"
#include "devices/quiet_ports.h"
#include "devices/serial_8250.h"
#include "virtio/notify_eventfds.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_pci_legacy.h"
#include "vmm/event_loop.h"
#include "vmm/bus.h"
#include "vmm/disk_config.h"
#include "vmm/disk_image.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/net_config.h"
#include "vmm/tap_device.h"
#include "vmm/signal_block.h"
#include "vmm/stop_request.h"
#include "vmm/trace_flags.h"
#include "vmm/vcpu.h"
#include "vmm/vcpu_runner.h"
#include "vmm/vm.h"

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
};

class Machine {
public:
    Machine(const MachineConfig& config, std::chrono::steady_clock::time_point process_start);
    ~Machine();

    // Runs until the guest or the user ends the VM; returns the exit status.
    int run();

private:
    void add_devices();
    void add_virtio_console();
    void add_virtio_disks();
    void add_virtio_nets();
    // At exit: each network card's counters, at info level.
    void log_net_counters() const;
    // Where the guest's console input goes, if anywhere.
    ConsoleInputSink* console_input_sink();
    void terminal_resized();
    // SIGUSR1: every virtio device's state, on stderr.
    void dump_device_state(bool terminal_raw) const;
    // At exit: a warning for each virtio device the guest never initialised.
    void warn_about_idle_devices() const;
    void set_up_vcpus(uint64_t entry);
    void probe_for_halt();

    // First, so that every thread the machine starts inherits the block.
    SignalBlock signal_block_;
    MachineConfig config_;
    std::chrono::steady_clock::time_point process_start_;
    // Opened and locked first: a bad --disk is reported (exit 6) before
    // anything else is set up.
    std::vector<DiskImage> disk_images_;
    // Then the taps, for the same reason (exit 6 for a tap that cannot be opened).
    std::vector<std::unique_ptr<TapDevice>> taps_;
    Kvm kvm_;
    Vm vm_;
    GuestMemory memory_;
    StopRequest stop_;
    IoBus io_bus_{"io"};
    MmioBus mmio_bus_{"mmio"};

    KvmIrqLine com1_irq_;
    Serial8250 serial_;
    I8042 i8042_;
    AcpiPm acpi_pm_;
    DebugExit debug_exit_;
    CmosRtc rtc_;
    QuietPorts quiet_ports_;
    // After the buses it maps BARs on; before the PCI devices, which are
    // destroyed first and lower their INTx lines (owned by the bridge) as
    // they reset. The bridge's destructor does not touch its devices.
    PciHostBridge pci_;

    // Serves queue kicks (ioeventfds) and device backends; before the
    // devices, which unregister from it when they go.
    EventLoop event_loop_;
    KvmNotifyEventfds notify_eventfds_{vm_, event_loop_};
    std::unique_ptr<VirtioConsole> virtio_console_;
    std::unique_ptr<VirtioPciLegacy> virtio_console_pci_;
    // Every virtio transport above, for the state dump and exit warnings.
    std::vector<VirtioPciLegacy*> virtio_transports_;
    // One device and one transport per --disk; the transports (declared
    // after) go first and reset their disks, which then finish their I/O.
    std::vector<std::unique_ptr<VirtioBlk>> disks_;
    std::vector<std::unique_ptr<VirtioPciLegacy>> disk_transports_;
    // Likewise one virtio-net device and transport per --net.
    std::vector<std::unique_ptr<VirtioNet>> nets_;
    std::vector<std::unique_ptr<VirtioPciLegacy>> net_transports_;

    std::vector<std::unique_ptr<Vcpu>> vcpus_;
    std::vector<std::unique_ptr<VcpuRunner>> runners_;
    int halted_probe_rounds_ = 0;
};

}  // namespace minikvm
