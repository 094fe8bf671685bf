#pragma once
// virtio-console (virtio 1.2 section 5.3) with one port, port 0, which the
// guest's driver makes /dev/hvc0: receiveq (queue 0) carries host input to
// the guest, transmitq (queue 1) the guest's output to the host. No
// MULTIPORT, so there is no control queue.
//
// Features offered: VIRTIO_CONSOLE_F_SIZE when the host knows a terminal
// size (columns and rows in the configuration space; set_size() changes them
// and raises a configuration-change interrupt), VIRTIO_CONSOLE_F_EMERG_WRITE
// (a byte written to emerg_wr is output at once, even before the queues
// exist: handy for a driver's first steps), and the ring features
// INDIRECT_DESC and EVENT_IDX.
//
// Input is never dropped and never invented: receive() fills only buffers the
// driver has posted and reports how many bytes it took; the caller keeps the
// rest and offers it again later (ConsoleInput retries).
//
// Guest mistakes inside a valid chain -- a transmit chain with device-
// writable buffers, a receive chain with none -- complete with length 0, are
// counted and logged (rate-limited). Ring-rule violations are the queue's:
// the device reports them to the transport, which stops the device.
//
// Threads: the transport calls in (kicks from the event loop or a vCPU)
// holding the device's lock; receive() and set_size() come from other
// threads and take that same lock.
//
// Polling: given an event source, the device is its Poller for the
// transmit queue (see VirtioBlk): while the loop polls, the driver is told
// not to notify and output is taken off the ring as it appears.

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "virtio/virtio_device.h"
#include "vmm/backends/console_input.h"
#include "vmm/core/event_sources.h"
#include "vmm/core/rate_limited_log.h"

namespace minikvm {

class VirtioConsole : public VirtioDevice, public ConsoleInputSink, private Poller {
public:
    static constexpr unsigned kReceiveQueue = 0;
    static constexpr unsigned kTransmitQueue = 1;
    static constexpr uint16_t kQueueSize = 128;

    // Device feature bits (5.3.3).
    static constexpr unsigned kFeatureSize = 0;        // VIRTIO_CONSOLE_F_SIZE
    static constexpr unsigned kFeatureMultiport = 1;   // not offered
    static constexpr unsigned kFeatureEmergWrite = 2;  // VIRTIO_CONSOLE_F_EMERG_WRITE

    // Configuration space (5.3.4): cols u16, rows u16, max_nr_ports u32, emerg_wr u32.
    static constexpr uint32_t kConfigCols = 0;
    static constexpr uint32_t kConfigRows = 2;
    static constexpr uint32_t kConfigMaxPorts = 4;
    static constexpr uint32_t kConfigEmergWrite = 8;
    static constexpr uint32_t kConfigSize = 12;

    struct TerminalSize {
        uint16_t columns;
        uint16_t rows;
    };

    // Receives the guest's output; may block (the guest waits meanwhile).
    using Output = std::function<void(std::span<const uint8_t>)>;

    // `name` prefixes log lines. Without `size`, F_SIZE is not offered.
    // With `poll_with` (which must outlive the device) the transmit queue
    // is polled when that source polls.
    VirtioConsole(std::string name, Output output, std::optional<TerminalSize> size,
                  EventSources* poll_with = nullptr);
    ~VirtioConsole() override;
    VirtioConsole(const VirtioConsole&) = delete;
    VirtioConsole& operator=(const VirtioConsole&) = delete;

    // VirtioDevice
    static constexpr VirtioDeviceKind kKind{.type = VirtioDeviceType::Console,
                                            .name = "console",
                                            .pci_device_id = 0x1003,  // 0x1002 is the balloon
                                            .pci_class = 0x07'80'00,  // communication controller, other
                                            .guest_kconfig = "CONFIG_VIRTIO_CONSOLE"};
    const VirtioDeviceKind& kind() const override { return kKind; }
    uint64_t device_features() const override { return features_; }
    unsigned queue_count() const override { return 2; }
    uint16_t queue_max_size(unsigned) const override { return kQueueSize; }
    uint32_t config_size() const override { return kConfigSize; }
    void read_config(uint32_t offset, std::span<uint8_t> data) override;
    void write_config(uint32_t offset, std::span<const uint8_t> data) override;
    void activate(uint64_t negotiated_features, std::span<VirtQueue> queues,
                  VirtioTransportSignals& signals) override;
    void reset() override;
    void queue_notified(unsigned index) override;

    // ConsoleInputSink: host input into posted receive buffers.
    size_t receive(std::span<const uint8_t> bytes) override;

    // The host terminal was resized. Ignored when F_SIZE was not offered.
    void set_size(TerminalSize size);
    // Sends output the driver queued that no kick has delivered yet (the
    // machine calls it once the vCPUs have stopped, so nothing printed
    // last is lost). From any thread.
    void flush_output();

    // Counters, for tests and the exit log.
    uint64_t bytes_transmitted() const;
    uint64_t bytes_received() const;
    uint64_t malformed_requests() const;

private:
    // Poller, each taking device_lock().
    void begin_polling() override;
    bool poll() override;
    bool end_polling() override;

    // Both with device_lock() held and the device active.
    void transmit_all();
    void report_if_broken(VirtQueue& queue);
    // Counts and logs a guest mistake; needs no lock.
    void malformed(std::string_view what);

    const std::string name_;
    const Output output_;
    const uint64_t features_;
    EventSources* const poll_with_;

    TerminalSize size_{80, 25};
    std::span<VirtQueue> queues_;  // empty while not active
    VirtioTransportSignals* signals_ = nullptr;
    uint64_t negotiated_ = 0;
    uint64_t bytes_transmitted_ = 0;
    uint64_t bytes_received_ = 0;
    std::atomic<uint64_t> malformed_requests_{0};
    RateLimitedLog malformed_log_;
};

}  // namespace minikvm
