#pragma once
// One virtual machine: KVM objects, guest RAM, the PC devices, the loaded
// Linux kernel and the vCPU threads. Construction does every check that can
// fail because of user input, so errors surface before any vCPU runs.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "devices/acpi_pm.h"
#include "devices/boot_complete_marker.h"
#include "devices/cmos_rtc.h"
#include "devices/debug_exit.h"
#include "devices/exec_status.h"
#include "devices/i8042.h"
#include "devices/irq_line.h"
#include "devices/irqfd_msi_sender.h"
#include "devices/pci_host_bridge.h"
#include "devices/pvpanic.h"
#include "devices/quiet_ports.h"
#include "devices/serial_8250.h"
#include "virtio/notify_eventfds.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_pci_legacy.h"
#include "vmm/app/console_watcher.h"
#include "vmm/app/machine_config.h"
#include "vmm/app/run_report.h"
#include "vmm/app/vfio_assignment.h"
#include "vmm/app/virtio_registry.h"
#include "vmm/backends/console_input.h"
#include "vmm/backends/gdb/gdb_server.h"
#include "vmm/backends/gdb/kvm_gdb_target.h"
#include "vmm/core/bus.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/gsi_routing.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/kvm.h"
#include "vmm/core/memory_slots.h"
#include "vmm/core/signal_block.h"
#include "vmm/core/stop_request.h"
#include "vmm/core/vcpu.h"
#include "vmm/core/vcpu_gate.h"
#include "vmm/core/vcpu_runner.h"
#include "vmm/core/vm.h"

namespace minikvm {

// One virtio device on the PCI bus. The transport is destroyed first
// (member order): it resets the device, which then finishes its I/O.
struct VirtioSlot {
    std::string name;
    std::unique_ptr<VirtioDevice> device;
    std::unique_ptr<IrqfdMsiSender> msi;  // null with --msix off; outlives the transport
    std::unique_ptr<VirtioPciLegacy> transport;
};

class Machine {
public:
    Machine(const MachineConfig& config, std::chrono::steady_clock::time_point process_start);
    ~Machine();

    // Runs until the guest or the user ends the VM; returns the exit status.
    int run();
    // After run(): the --report contents (exit code, cause, hints, timings).
    const RunReport& report() const { return report_; }
    // With --exec, after run(): the command's status if the init reported one.
    std::optional<int> exec_status() const {
        const int status = exec_status_reported_;
        return status >= 0 ? std::optional(status) : std::nullopt;
    }

private:
    void add_devices();
    void add_virtio_devices();
    void add_assigned_devices();
    // KVM's interrupt routing, made on first need; null when KVM has none.
    GsiRouting* gsi_routing();
    // Makes the PCI slots' INTx lines: resampling irqfds where KVM has them.
    PciHostBridge::IrqLineFactory pci_intx_factory();
    // At exit: each device's summary (a network card's counters), at info level.
    void log_device_summaries() const;
    // Where the guest's console input goes, if anywhere.
    ConsoleInputSink* console_input_sink();
    void terminal_resized();
    // SIGUSR1: every virtio device's state, on stderr.
    void dump_device_state(bool terminal_raw) const;
    // At exit: a warning for each virtio device the guest never initialised;
    // returns them.
    std::vector<std::string> warn_about_idle_devices() const;
    // At exit: the hints for a failed boot (vmm/app/boot_hints.h), logged.
    std::vector<std::string> log_boot_hints(int status) const;
    // At exit: the --report contents.
    void build_report(int status, const std::string& cause, std::vector<std::string> hints);
    double ms_since_start() const;
    void set_up_vcpus(uint64_t entry);
    void probe_for_halt();

    // Every byte the guest prints, from any console (ConsoleWatcher source
    // numbers): to the terminal when it is wired there, the console log,
    // and the watcher.
    void console_output(unsigned source, std::span<const uint8_t> bytes, bool to_terminal);
    // Ends the run (exit 18) once a panic is known and its report is in,
    // or a second after it started.
    void check_for_panic();
    // What each vCPU was doing over a few probes, for the hang report: one
    // snapshot could catch an idle guest in its timer interrupt.
    struct VcpuActivity {
        static constexpr size_t kKinds = 5;  // VcpuRunner::ProbeResult values; Pending: no answer
        unsigned count[kKinds] = {};
        uint64_t rip[kKinds] = {};  // the last RIP seen in each state
        unsigned total() const {
            unsigned sum = 0;
            for (unsigned n : count) sum += n;
            return sum;
        }
    };
    std::vector<VcpuActivity> sample_vcpus();
    // --timeout ran out: what every vCPU and device was doing, then exit 20.
    void report_hang(const std::vector<VcpuActivity>& activity);
    // The exit status and reason, with a panic or a --fail-on report taking
    // precedence over how the guest ended afterwards.
    std::pair<int, std::string> verdict() const;
    // At exit: the saved --fail-on report, on stderr.
    void log_kernel_report() const;

    // First, so that every thread the machine starts inherits the block.
    SignalBlock signal_block_;
    MachineConfig config_;
    std::chrono::steady_clock::time_point process_start_;
    // Opened first: an unwritable --console-log is reported before anything runs.
    UniqueFd console_log_;
    mutable std::mutex console_mutex_;  // guards watcher_ and the panic state below
    ConsoleWatcher watcher_;
    std::optional<std::chrono::steady_clock::time_point> panic_since_;
    std::optional<std::chrono::steady_clock::time_point> panic_last_output_;  // console bytes since
    bool pvpanic_seen_ = false;
    std::optional<double> first_console_byte_ms_;  // after process start
    std::optional<double> boot_complete_ms_;       // the guest's BootCompleteMarker
    RunReport report_;
    // Serves queue kicks (ioeventfds) and device backends; before the
    // devices, which unregister from it when they go.
    EventLoop event_loop_;
    VirtioDeviceContext device_context_;
    // Built first, from the registry: a bad --disk or --net is reported
    // (exit 6) before anything else is set up. Moved into virtio_slots_.
    std::vector<NamedVirtioDevice> virtio_devices_;
    // The same for --vfio-pci: sysfs's answers, moved into vfio_.
    std::vector<HostPciDevice> vfio_hosts_;
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
    ExecStatus exec_status_;  // on the bus with --exec only
    std::atomic<int> exec_status_reported_{-1};
    std::mutex console_input_mutex_;  // console_input_ and terminal_ready_
    ConsoleInput* console_input_ = nullptr;  // while run() has one
    bool terminal_ready_ = false;
    std::vector<uint8_t> exec_initramfs_;
    CmosRtc rtc_;
    QuietPorts quiet_ports_;
    PvPanic pvpanic_;
    BootCompleteMarker boot_marker_;
    // After the buses it maps BARs on; the bridge's destructor does not
    // touch its devices.
    PciHostBridge pci_;
    KvmNotifyEventfds notify_eventfds_{vm_};
    // MSI routes of the devices' MSI-X vectors; null with --msix off and
    // no assigned device.
    std::unique_ptr<GsiRouting> gsi_routing_;
    // KVM memory slots after RAM's: assigned devices' BARs.
    MemorySlots memory_slots_;

    // Last of the devices: each transport resets its device (lowering INTx
    // on the bridge, removing its ioeventfds) while all that still exists.
    std::vector<VirtioSlot> virtio_slots_;
    VirtioConsole* virtio_console_ = nullptr;  // in virtio_slots_ with --console virtio
    // --vfio-pci devices, after the virtio ones on the bus; null without.
    std::unique_ptr<VfioAssignment> vfio_;

    std::vector<std::unique_ptr<Vcpu>> vcpus_;
    std::vector<std::unique_ptr<VcpuRunner>> runners_;
    int halted_probe_rounds_ = 0;
    // --gdb: the all-stop gate every vCPU passes, the target over the vCPUs
    // and the socket server; null without --gdb. Made once the vCPUs exist,
    // so a bad or busy address is reported before any vCPU runs.
    void set_up_gdb();
    std::unique_ptr<VcpuGate> gdb_gate_;
    std::unique_ptr<gdb::KvmGdbTarget> gdb_target_;
    std::unique_ptr<gdb::GdbServer> gdb_server_;
};

}  // namespace minikvm
