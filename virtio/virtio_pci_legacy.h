#pragma once
// The legacy (virtio 0.9.5, "transitional" in virtio 1.2 section 4.1.4.8)
// virtio-pci transport: one I/O BAR holding the register block below, INTx
// or MSI-X for interrupts, the split ring in the legacy layout.
//
//   offset  width  register
//   0       32     host features (low 32 device feature bits)     RO
//   4       32     guest features (only offered bits are kept)    RW
//   8       32     queue PFN of the selected queue                RW
//   12      16     queue size of the selected queue               RO
//   14      16     queue select                                   RW
//   16      16     queue notify (value = queue index)             WO, reads 0
//   18      8      device status                                  RW
//   19      8      ISR status: bit 0 used buffer, bit 1 config    RO, read clears
//   20..           device configuration space
// and while MSI-X is enabled (virtio 1.2 4.1.4.8):
//   20      16     config change vector                           RW
//   22      16     queue vector of the selected queue             RW
//   24..           device configuration space
//
// MSI-X. Given an MsiSender, the device has an MSI-X capability (see
// MsixCapability) with one vector per queue plus one, its table and PBA in
// memory BAR 1. The driver maps config changes and each queue to a vector by
// writing its number; one the table does not have reads back as
// NO_VECTOR (0xffff), logged once, and so does every vector after a reset.
// While MSI-X is enabled, used-buffer and config-change signals go to the
// mapped vector (none for NO_VECTOR), never to INTx; the ISR gets only the
// config bit (virtio 4.1.4.5.1). The table's mask and pending rules apply
// (masked, or Bus Master Enable clear: pending, delivered once later), and
// a reset forgets what was pending.
// Enabling MSI-X lowers INTx; disabling it raises INTx again if the ISR
// still holds bits. Without an MsiSender (`--msix off`) there is no
// capability and no BAR 1: INTx only.
//
// Access widths. The guest may access 1, 2 or 4 bytes at any offset; the
// block is treated as little-endian bytes:
//  - a read returns, byte by byte, the bytes of whichever registers (or
//    configuration bytes) it covers, so a narrow read gives the matching
//    bytes of a wider register; the ISR clears only if its byte is read;
//  - a write reaches every register whose first byte it covers, with the
//    written bytes zero-extended to the register's width (a 1-byte write of
//    5 to queue select selects queue 5); a register whose first byte it does
//    not cover is left alone;
//  - configuration bytes past config_size() read 0 and ignore writes.
//
// Behaviour the driver can observe:
//  - status 0 resets everything: the device (in-flight work), the queues,
//    the negotiated features, queue select, the ISR (INTx lowered) and the
//    broken state. FAILED (0x80) is stored and does nothing else.
//  - DRIVER_OK activates the device once per reset. Legacy has no
//    FEATURES_OK, and DRIVER_OK without ACKNOWLEDGE|DRIVER is accepted as
//    legacy Linux would, logged at debug.
//  - While activated the queues belong to the device: PFN and guest-feature
//    writes are then ignored (logged once). Linux writes both before
//    DRIVER_OK and resets before releasing queues.
//  - Broken (a PFN whose ring is not RAM, or the device's own report): status
//    reads with DEVICE_NEEDS_RESET (0x40) set, kicks and used-buffer
//    interrupts stop, a config-change interrupt is raised if DRIVER_OK was
//    set; DRIVER_OK does not activate. Only status 0 recovers.
//  - Kicks for a queue that does not exist, is not placed, or before
//    DRIVER_OK are ignored (the first two logged once).
//  - Writes to read-only registers are ignored, logged once.
//
// Kicks. With NotifyEventfds, every queue gets an ioeventfd on
// BAR0 + 16 (2 bytes, datamatch = queue index) while BAR 0 is mapped, heard
// through the given EventSources. Without it, or when that setup fails, kicks trap to
// the vCPU and arrive through write().
//
// Threads. Registers are accessed from vCPU threads, kicks from the event
// loop, signals from wherever the device runs. Two locks, always taken in
// this order: device_mutex_ -- the device's own lock, device_lock(), so one
// lock covers the device, its queues and this transport's queue state, and
// one kick takes it once -- serializes every call into the VirtioDevice;
// state_mutex_ guards status, ISR and the INTx
// level, so the device may signal while device_mutex_ is held (from inside
// queue_notified) or not (from its own threads). Eventfd registration has a
// lock of its own and never holds the others, because the event loop waits
// for a running handler, which may be waiting for device_mutex_.
// The diagnostics below take the same locks the same way: state_report()
// holds device_mutex_ (so the device's own threads are not using the
// queues), nests state_mutex_ briefly, and takes eventfd_mutex_ alone, first. So they may be called from
// any thread while the guest runs -- but not from inside a VirtioDevice
// call (device_mutex_ is held there) nor from a signal handler (they lock).
// The trace switch may be flipped, and the PCI address set, at any time.
//
// Debugging. set_trace(true) (`--trace virtio`) logs at info level one
// grep-friendly line per event, each starting "trace <name> ":
//   trace virtio-console0 read  off=18 status len=1 val=0x07
//   trace virtio-console0 write off=8 queue_pfn len=4 val=0x00012345
//   trace virtio-console0 read  off=16 queue_notify+status+isr len=4 val=...
//   trace virtio-console0 notify q=1 eventfd      ("trap": through a vCPU exit)
//   trace virtio-console0 notify q=0 trap ignored: before DRIVER_OK
//   trace virtio-console0 status 0x03 -> 0x07 ACKNOWLEDGE|DRIVER|DRIVER_OK
//   trace virtio-console0 activate features=0x00000001 queues=q0,q1
//   trace virtio-console0 reset status was 0x07
//   trace virtio-console0 irq raise isr=0x1       (then "irq lower isr-read")
// and, from its queues (see VirtQueue), ring placement and every chain
// popped and pushed:
//   trace virtio-console0 q1 configure pfn=0x12345 size=64 desc=... used=...
//   trace virtio-console0 q1 pop head=3 bufs=[0x12340000+512 r] avail_idx=4
//   trace virtio-console0 q1 push head=3 len=17 used_idx=5
// A register read is logged after its effects (so "irq lower" comes before
// the ISR read that caused it), a write before them. While off, tracing
// costs a relaxed load and a branch per event.
//
// state_report() gives the device's state in a few lines, each starting
// with its name: PCI address, status decoded, offered and negotiated
// features, ISR and INTx, broken and why, and per queue the device's
// indices next to what the guest's rings hold now. never_driver_ok_warning()
// explains, at the end of a run, a device the guest never initialised.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "devices/msi_sender.h"
#include "devices/msix_capability.h"
#include "devices/pci_device.h"
#include "virtio/device_status.h"
#include "virtio/notify_eventfds.h"
#include "virtio/virtio_device.h"
#include "virtio/virtqueue.h"
#include "vmm/core/bus.h"
#include "vmm/core/event_sources.h"
#include "vmm/core/guest_memory.h"

namespace minikvm {

class VirtioPciLegacy : public PciDevice, public BusDevice, private VirtioTransportSignals {
public:
    static constexpr uint16_t kVendorId = 0x1af4;

    // Register offsets in BAR 0.
    static constexpr uint32_t kHostFeatures = 0;
    static constexpr uint32_t kGuestFeatures = 4;
    static constexpr uint32_t kQueuePfn = 8;
    static constexpr uint32_t kQueueSize = 12;
    static constexpr uint32_t kQueueSelect = 14;
    static constexpr uint32_t kQueueNotify = 16;
    static constexpr uint32_t kStatus = 18;
    static constexpr uint32_t kIsr = 19;
    static constexpr uint32_t kConfig = 20;
    // With MSI-X enabled.
    static constexpr uint32_t kMsiConfigVector = 20;
    static constexpr uint32_t kMsiQueueVector = 22;
    static constexpr uint32_t kConfigWithMsix = 24;
    static constexpr uint16_t kNoVector = 0xffff;
    static constexpr unsigned kMsixBar = 1;

    // Device status bits (virtio 1.2 2.1).
    static constexpr uint8_t kStatusAcknowledge = device_status::kAcknowledge;
    static constexpr uint8_t kStatusDriver = device_status::kDriver;
    static constexpr uint8_t kStatusDriverOk = device_status::kDriverOk;
    static constexpr uint8_t kStatusFeaturesOk = device_status::kFeaturesOk;
    static constexpr uint8_t kStatusNeedsReset = device_status::kNeedsReset;
    static constexpr uint8_t kStatusFailed = device_status::kFailed;

    static constexpr uint8_t kIsrQueue = 0x01;
    static constexpr uint8_t kIsrConfig = 0x02;

    static constexpr uint32_t kMinBarSize = 32;

    // `device` and `memory` (and `eventfds` and `events`, given both or
    // neither) must outlive this.
    // `name` prefixes log lines ("virtio-console0"). Throws
    // std::invalid_argument for a device ID outside the transitional range, a queue size that is
    // not a power of two in 1..32768, or configuration space that does not
    // fit a 256-byte I/O BAR.
    // `msix`, if given, gets the device MSI-X (see above) and must outlive this.
    VirtioPciLegacy(VirtioDevice& device, const GuestMemory& memory, std::string name,
                    NotifyEventfds* eventfds = nullptr, EventSources* events = nullptr, MsiSender* msix = nullptr);
    // Resets the device and removes the ioeventfds.
    ~VirtioPciLegacy() override;

    VirtioPciLegacy(const VirtioPciLegacy&) = delete;
    VirtioPciLegacy& operator=(const VirtioPciLegacy&) = delete;

    // The PCI identity of a kind of device (std::invalid_argument for a
    // device ID outside the transitional range), and BAR 0's size for a
    // configuration space of `config_size` bytes.
    static PciIdentity identity_for(const VirtioDeviceKind& kind);
    static uint32_t bar_size_for(uint32_t config_size, bool msix = false);

    // PciDevice
    PciConfigSpace& config() override { return config_; }
    std::vector<PciBar> bars() override;
    void connect_intx(IrqLine& intx) override;
    void bar_mapping_changed(unsigned index, std::optional<uint64_t> base) override;
    void config_written(uint32_t offset, uint32_t length) override;
    // Where the bridge put us, for the state dump and the warning.
    void pci_address_assigned(PciBdf address) override;

    // BusDevice: BAR 0; `offset` is relative to its base.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // For tests and diagnostics.
    uint8_t status() const;
    bool broken() const;
    uint32_t bar_size() const { return bar_size_; }
    // Ports with an ioeventfd now (one per queue), in queue order.
    size_t eventfd_count() const;
    const std::string& name() const { return name_; }
    std::optional<PciBdf> pci_address() const;
    // The MSI-X capability; null without one.
    const MsixCapability* msix() const { return msix_.get(); }
    MsixCapability* msix() { return msix_.get(); }
    bool msix_enabled() const;
    // The vector config changes, or queue `index`, are mapped to (kNoVector: none).
    uint16_t config_vector() const;
    uint16_t queue_vector(unsigned index) const;

    // Debug tracing (see the header comment); off until set.
    void set_trace(bool on) { trace_.store(on, std::memory_order_relaxed); }
    bool trace() const { return trace_.load(std::memory_order_relaxed); }

    // The device's state (see the header comment): lines each starting with
    // the device's name and ending in '\n', one per queue among them.
    std::string state_report() const;

    // Every status bit the driver ever wrote, across resets.
    uint8_t status_bits_ever_set() const;
    // Whether the driver ever set DRIVER_OK (sticky across resets).
    bool ever_reached_driver_ok() const;
    // Chains the device has taken from its queues and not returned yet.
    uint32_t chains_in_flight() const;
    // For the end of a run: a warning line naming the guest kernel option
    // that is probably missing, or nullopt when DRIVER_OK was reached.
    std::optional<std::string> never_driver_ok_warning() const;

private:
    // Guest misbehaviour worth one log line each, not one per access.
    enum class Once : unsigned {
        ReadOnlyWrite,
        NotifyNoQueue,
        NotifyNotReady,
        PfnNoQueue,
        PfnWhileActive,
        FeaturesWhileActive,
        VectorOutOfRange,
        MsixRefused,
        Count,
    };

    struct Registration {
        UniqueFd fd;
        uint16_t port;
        uint16_t queue;
    };

    // How a kick arrived, for the trace.
    enum class KickPath { Trap, Eventfd };

    // VirtioTransportSignals
    void signal_used_buffer(const VirtQueue& queue) override;
    void signal_config_change() override;
    void signal_device_broken(std::string_view reason) override;

    // One register of the block, by its offset; each takes the locks it needs.
    uint32_t read_register(uint32_t offset);
    void write_register(uint32_t offset, uint32_t value);
    void write_queue_pfn(uint32_t pfn);
    void write_status(uint8_t value);
    void notify_queue(uint32_t index, KickPath path);  // takes device_mutex_
    void reset_locked();                               // device_mutex_ held
    void mark_broken(std::string_view reason);         // takes state_mutex_
    uint8_t read_isr();                                // takes state_mutex_
    void raise_locked(uint8_t isr_bits);               // state_mutex_ held
    // MSI-X is on: signal `vector` through the table. state_mutex_ held.
    void signal_vector_locked(uint16_t vector, const char* what);
    uint16_t checked_vector(uint16_t vector);          // out of range: kNoVector, logged once
    void msix_refused(uint16_t vector, const MsiMessage& message);
    void lower_locked(std::string_view why);           // state_mutex_ held
    void log_once(Once what, std::string_view message);
    void trace_access(const char* direction, uint64_t offset, std::span<const uint8_t> data, bool msix) const;
    std::string who() const;  // name and PCI address; takes state_mutex_

    void register_eventfds(uint64_t base);
    void unregister_eventfds();

    VirtioDevice& device_;
    const std::string name_;
    const VirtioDeviceKind kind_;
    const uint64_t device_features_;
    const uint32_t config_size_;
    PciConfigSpace config_;
    std::unique_ptr<MsixCapability> msix_;  // null without an MsiSender
    const uint32_t bar_size_;
    NotifyEventfds* const eventfds_;
    EventSources* const events_;
    MsiSender* const msi_sender_;
    std::vector<uint16_t> queue_sizes_;  // validated once; the device's sizes never change
    std::atomic<unsigned> logged_once_{0};  // bit per Once
    std::atomic<bool> trace_{false};        // read by the queues too

    // Guarded by device_mutex_: the device's lock.
    std::mutex& device_mutex_;
    std::vector<VirtQueue> queues_;
    uint32_t guest_features_ = 0;
    uint16_t queue_select_ = 0;
    bool activated_ = false;

    // Guarded by state_mutex_.
    mutable std::mutex state_mutex_;
    IrqLine* intx_ = nullptr;
    uint8_t status_ = 0;  // as the driver wrote it; NEEDS_RESET is added on read
    uint8_t isr_ = 0;
    bool intx_asserted_ = false;
    bool msix_enabled_ = false;  // follows the capability's enable bit
    uint16_t config_vector_ = kNoVector;
    std::vector<uint16_t> queue_vectors_;
    bool running_ = false;  // activated and not broken: signals are honoured
    bool broken_ = false;
    std::string broken_reason_;
    uint8_t status_seen_ = 0;  // every bit ever written; never reset
    std::optional<PciBdf> pci_address_;

    // Guarded by eventfd_mutex_.
    mutable std::mutex eventfd_mutex_;
    std::vector<Registration> registrations_;
};

}  // namespace minikvm
