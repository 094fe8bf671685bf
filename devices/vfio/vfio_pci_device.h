#pragma once
// A host PCI function assigned to the guest through VFIO (--vfio-pci): the
// guest's own driver drives the real device. minikvm stands between them
// only where it must:
//
// Configuration space. The header (0x00-0x3f) is emulated: the IDs are the
// device's, BARs are minikvm's (the guest sizes and moves them; the device
// keeps the addresses the host gave it), the expansion ROM is hidden, the
// header type says single-function, the interrupt line is the GSI minikvm
// wired. The command register's I/O, memory, bus-master and INTx-disable
// bits are the guest's and are mirrored to the device. Capabilities are
// filtered (vfio_pci_capabilities.h): MSI-X and MSI emulated, power management and
// PCI Express as read-only copies, the rest left out of the list. Every
// other byte from 0x40 up reads and writes through VFIO's config region.
//
// BARs. Memory BARs are mmapped from VFIO and become KVM memory slots where
// the guest puts them, so accesses need no exit; only the pages holding the
// MSI-X table and PBA trap, and what else those pages hold goes to the
// device through VFIO. I/O BARs, and memory BARs VFIO cannot map (or
// smaller than a page), go through VFIO's region reads and writes.
//
// Interrupts. INTx: VfioIntx (trigger and resample irqfds). MSI-X and MSI:
// VfioMsiVectors (an irqfd per unmasked vector). VFIO allows one type at a
// time, so enabling MSI-X or MSI turns INTx off and disabling it turns INTx
// back; a guest enabling both gets the first it enabled (the other is
// refused and logged, as the PCI spec leaves it undefined).
//
// Reset. VFIO_DEVICE_RESET before the guest sees the device, and when it
// goes (the guest rebooted or minikvm exits), after bus mastering and every
// interrupt are off.
//
// Threads: configuration accesses come under the bridge's lock; BAR
// accesses from any vCPU (the MSI-X pieces are thread-safe, VFIO region
// accesses are pread/pwrite).

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "devices/msi_capability.h"
#include "devices/msix_capability.h"
#include "devices/pci_device.h"
#include "devices/vfio/vfio_intx.h"
#include "devices/vfio/vfio_msi_vectors.h"
#include "devices/vfio/vfio_pci_capabilities.h"
#include "vmm/backends/vfio/vfio_device.h"
#include "vmm/core/gsi_routing.h"
#include "vmm/core/host_mapping.h"
#include "vmm/core/memory_slots.h"

namespace minikvm {

class Vm;

class VfioPciDevice : public PciDevice {
public:
    // KVM pieces the device wires itself into; each may be null (unit
    // tests): then BARs always trap and interrupts go nowhere.
    struct Kvm {
        const Vm* vm = nullptr;
        GsiRouting* routing = nullptr;
        MemorySlots* slots = nullptr;
    };

    // Resets the device and reads its configuration space; VmmError
    // (BadDevice) with `name` in front when the device is unusable (no
    // configuration space, an I/O BAR over 256 bytes).
    VfioPciDevice(VfioDeviceIo& device, Kvm kvm, std::string name);
    // Interrupts off, bus mastering and decoding off, reset.
    ~VfioPciDevice() override;

    VfioPciDevice(const VfioPciDevice&) = delete;
    VfioPciDevice& operator=(const VfioPciDevice&) = delete;

    const std::string& name() const { return name_; }
    // `--trace vfio`: configuration accesses (emulated or passed through),
    // BAR mappings, interrupt mode changes; info lines "trace NAME ...".
    void set_trace(bool on) { trace_.store(on, std::memory_order_relaxed); }

    // PciDevice
    PciConfigSpace& config() override { return config_; }
    void config_read(uint32_t offset, std::span<uint8_t> data) override;
    PciConfigChanges config_write(uint32_t offset, std::span<const uint8_t> data) override;
    void config_written(uint32_t offset, uint32_t length) override;
    std::vector<PciBar> bars() override;
    void connect_intx(IrqLine& intx) override;
    void bar_mapping_changed(unsigned index, std::optional<uint64_t> base) override;
    void pci_address_assigned(PciBdf address) override { address_ = address; }

    // The SIGUSR1 dump: identity, BARs, interrupt mode, MSI-X vectors.
    std::string state_report() const;

    // For tests: what the guest sees of BAR `index` at `offset`.
    void bar_read(unsigned index, uint64_t offset, std::span<uint8_t> data);
    void bar_write(unsigned index, uint64_t offset, std::span<const uint8_t> data);
    // KVM memory slots covering BAR `index` now.
    size_t bar_slots(unsigned index) const;
    // The emulated MSI-X capability; null when the device has none.
    const MsixCapability* msix() const { return msix_.get(); }
    // The emulated MSI capability; null when the device has none.
    const MsiCapability* msi() const { return msi_.get(); }
    enum class InterruptMode { None, Intx, Msi, Msix };
    InterruptMode interrupt_mode() const { return mode_; }

private:
    class BarHandler;
    struct Bar {
        bool present = false;
        PciBarKind kind = PciBarKind::Io;
        uint64_t size = 0;
        bool prefetchable = false;
        std::unique_ptr<BarHandler> handler;
        std::optional<HostMapping> mapping;  // all of the BAR, when VFIO can map it
        std::vector<MemorySlot> slots;       // after `mapping`: removed first
    };
    // [start, end) of BAR bytes that trap (MSI-X table and PBA pages).
    struct Trapped {
        unsigned bar;
        uint64_t start;
        uint64_t end;
    };

    void read_hardware_config();
    void set_up_bars();
    void set_up_capabilities();
    bool passthrough(uint32_t offset) const { return offset < 256 && passthrough_[offset]; }
    void mirror_command();
    void drop_slots(unsigned index);
    void map_slots(unsigned index, uint64_t base);
    void switch_to_msix();
    void switch_to_msi();
    void switch_to_intx();
    // Turns MSI or MSI-X off in VFIO and KVM.
    void leave_message_mode();
    void set_up_msix(const VfioPciCapability& capability);
    void set_up_msi(const VfioPciCapability& capability);
    bool vfio_has(uint32_t irq_index) const;
    bool in_msix_table(unsigned bar, uint64_t offset) const;
    bool in_msix_pba(unsigned bar, uint64_t offset) const;
    bool tracing() const { return trace_.load(std::memory_order_relaxed); }
    void trace_config(const char* direction, uint32_t offset, std::span<const uint8_t> data, const char* how) const;

    VfioDeviceIo& device_;
    const Kvm kvm_;
    const std::string name_;
    std::atomic<bool> trace_{false};
    PciBdf address_;

    std::array<uint8_t, 256> hardware_{};  // configuration space as the device had it after reset
    std::array<bool, 256> passthrough_{};   // bytes that read and write through VFIO
    PciConfigSpace config_;
    std::array<Bar, PciConfigSpace::kBarCount> bars_;
    std::vector<Trapped> trapped_;
    std::vector<VfioPciCapability> capabilities_;

    std::unique_ptr<VfioMsiVectors> msix_vectors_;  // before msix_: its table delivers into them
    std::unique_ptr<MsixCapability> msix_;
    std::unique_ptr<VfioMsiVectors> msi_vectors_;
    std::unique_ptr<MsiCapability> msi_;
    std::unique_ptr<VfioIntx> intx_;
    InterruptMode mode_ = InterruptMode::None;
    bool both_logged_ = false;
    std::atomic<bool> bar_failure_logged_{false};
};

}  // namespace minikvm
