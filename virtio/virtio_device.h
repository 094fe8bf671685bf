#pragma once
// What a virtio device (console, block, net...) is, apart from how the guest
// reaches it. A transport (VirtioPciLegacy) owns the registers, the feature
// negotiation and the virtqueues; the device supplies its identity, its
// configuration space and the work done on its queues.
//
// Lifecycle, as the transport drives it:
//   1. the driver negotiates features and places the queues (the device is
//      not involved: it has no queues yet);
//   2. DRIVER_OK: activate() hands over the negotiated features and the
//      queues; from then on the queues are the device's alone;
//   3. kicks arrive as queue_notified(); the device pops, pushes, and asks
//      for the used-buffer interrupt through VirtioTransportSignals;
//   4. status 0 (or the transport going away): reset() takes the queues back.
//
// Threads. Each device has one lock, device_lock(), and the transport is
// the one that takes it: it holds it around every call below (from vCPU
// threads and the event-loop thread) and while it reads the queues for a
// state dump. A device takes it itself only where work comes in from
// elsewhere -- I/O completions, tap readiness, console input -- and never
// inside the calls below (it is already held there).
// VirtioTransportSignals may be called from any thread, with the lock held
// or not.

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "virtio/virtqueue.h"

namespace minikvm {

// Device IDs (virtio 1.2 section 5.1-5.16 and 5's table): also the PCI
// subsystem ID. The spec's list, so a new device needs no edit here.
enum class VirtioDeviceType : uint16_t {
    Net = 1,
    Block = 2,
    Console = 3,
    Entropy = 4,
    Balloon = 5,
    ScsiHost = 8,
    NinePTransport = 9,
    Gpu = 16,
    Input = 18,
    Socket = 19,
    Crypto = 20,
    Iommu = 23,
    Memory = 24,
    Sound = 25,
    FileSystem = 26,
    PersistentMemory = 27,
};

// What a kind of device is to the guest, stated once by the device itself:
// the transport builds the PCI identity from it, and the end-of-run hint
// names the guest kernel option from it.
struct VirtioDeviceKind {
    VirtioDeviceType type;
    std::string_view name;    // "block": in state dumps and hints
    // The transitional PCI device ID (virtio 1.2 4.1.2.1: a table, not a
    // formula, 0x1000..0x103f) and the PCI class code (class, subclass,
    // programming interface).
    uint16_t pci_device_id;
    uint32_t pci_class;
    std::string_view guest_kconfig;  // "CONFIG_VIRTIO_BLK": the guest's driver
};

// What a device may ask of its transport once activated. Safe from any
// thread, including from inside the device's own activate()/queue_notified().
class VirtioTransportSignals {
public:
    virtual ~VirtioTransportSignals() = default;
    // The device put buffers in `queue` (one of those activate() gave it)
    // and the queue's needs_interrupt() said yes: raise the used-buffer
    // interrupt (with MSI-X, that queue's vector).
    virtual void signal_used_buffer(const VirtQueue& queue) = 0;
    // The device changed its configuration space.
    virtual void signal_config_change() = 0;
    // The device cannot go on (a queue broke a ring rule...): the transport
    // stops delivering kicks and interrupts until the driver resets it.
    // `reason` is logged once.
    virtual void signal_device_broken(std::string_view reason) = 0;
};

class VirtioDevice {
public:
    virtual ~VirtioDevice() = default;

    virtual const VirtioDeviceKind& kind() const = 0;
    VirtioDeviceType device_type() const { return kind().type; }
    // Feature bits the device offers (device-specific and ring bits).
    virtual uint64_t device_features() const = 0;
    // How many virtqueues, and each one's size: a power of two, 1..32768.
    // Both must stay constant for the device's lifetime.
    virtual unsigned queue_count() const = 0;
    virtual uint16_t queue_max_size(unsigned index) const = 0;

    // Device configuration space. The transport only passes accesses that lie
    // entirely inside [0, config_size()); config_size() must stay constant.
    virtual uint32_t config_size() const = 0;
    virtual void read_config(uint32_t offset, std::span<uint8_t> data) = 0;
    virtual void write_config(uint32_t offset, std::span<const uint8_t> data) = 0;

    // DRIVER_OK: start serving. `queues` has queue_count() entries; a queue
    // the driver did not place is not ready(). A legacy driver may kick before
    // DRIVER_OK and those kicks are not replayed, so the device should look
    // for buffers already available. `signals` stays valid until reset().
    virtual void activate(uint64_t negotiated_features, std::span<VirtQueue> queues,
                          VirtioTransportSignals& signals) = 0;
    // Device reset: drop all in-flight work and forget the queues and the
    // signals; no VirtQueue or signal may be touched after this returns.
    // Called on every reset, whether or not activate() came first.
    virtual void reset() = 0;
    // The driver kicked queue `index`, which exists and is ready. Only called
    // between activate() and reset().
    virtual void queue_notified(unsigned index) = 0;

    // For the same dump: the device's own state (counters...) as lines
    // ending in '\n', without the device's name (the transport adds it).
    // Called like the others; the default has nothing to say.
    virtual std::string state_lines() const { return {}; }

    // For the end of a run: one line worth logging at info level (a network
    // card's counters), without the device's name; empty for nothing.
    // Called after the vCPUs have stopped.
    virtual std::string exit_summary() const { return {}; }

    // The device's one lock (see "Threads" above).
    std::mutex& device_lock() const { return lock_; }

private:
    mutable std::mutex lock_;
};

}  // namespace minikvm
