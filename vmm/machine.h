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
#include "vmm/bus.h"
#include "vmm/guest_memory.h"
#include "vmm/kvm.h"
#include "vmm/stop_request.h"
#include "vmm/vcpu.h"
#include "vmm/vcpu_runner.h"
#include "vmm/vm.h"

namespace minikvm {

struct MachineConfig {
    std::string kernel_path;
    std::optional<std::string> initrd_path;
    std::string command_line;
    uint32_t cpus = 1;
    uint64_t memory_bytes = 256ULL << 20;
};

class Machine {
public:
    Machine(const MachineConfig& config, std::chrono::steady_clock::time_point process_start);
    ~Machine();

    // Runs until the guest or the user ends the VM; returns the exit status.
    int run();

private:
    void add_devices();
    void set_up_vcpus(uint64_t entry);
    void probe_for_halt();

    MachineConfig config_;
    std::chrono::steady_clock::time_point process_start_;
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
    PciHostBridge pci_;  // after the buses it maps BARs on; PCI devices will be declared before it

    std::vector<std::unique_ptr<Vcpu>> vcpus_;
    std::vector<std::unique_ptr<VcpuRunner>> runners_;
    int halted_probe_rounds_ = 0;
};

}  // namespace minikvm
