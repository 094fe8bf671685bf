#pragma once
// virtio-net (virtio 1.2 section 5.1) over a tap: receiveq (queue 0) and
// transmitq (queue 1), no control queue (no feature offered needs one).
//
// Offered: MAC, STATUS (link up until the tap fails), CSUM and GUEST_CSUM, HOST_TSO4/6 and
// GUEST_TSO4/6, HOST_ECN and GUEST_ECN, MRG_RXBUF, and the ring features
// INDIRECT_DESC and EVENT_IDX. No UFO: Linux no longer makes UFO packets,
// and a tap cannot take them on the receive side. At DRIVER_OK the tap is
// told the header size the driver negotiated (10 bytes, 12 with MRG_RXBUF)
// and which receive offloads it may hand over (partial checksums with
// GUEST_CSUM, TSO4/TSO6 with GUEST_TSO4/6, TSO with ECN with GUEST_ECN).
//
// The header and frame of a chain are one byte stream (no descriptor layout
// is assumed; virtio/net_header).
//
// Receive. The tap is polled only while the driver has posted receive
// buffers. When the ring runs dry the device stops polling the tap (frames
// wait in the host's tap queue: backpressure, no busy loop) and asks for a
// notification; the driver's next kick makes it poll again. Without
// MRG_RXBUF each frame is read with one readv() straight into one chain; a
// frame larger than the chain is dropped and counted (the chain is reused).
// With MRG_RXBUF chains are taken ahead, up to the largest frame the
// negotiated offloads allow, and a frame is read straight into as many as
// it needs; num_buffers in the first says how many. What does not fit waits
// in a host buffer until the driver posts more: never dropped, never
// truncated. Used entries are published in one batch per wakeup (a merged
// frame's all at once), with at most one interrupt (EVENT_IDX decides).
//
// Transmit. On a kick every available chain goes to the backend with one
// send() (on a tap one writev(); libslirp takes it in a call): the header, copied out of guest memory once, checked
// (net_header's check_transmit: offloads negotiated, offsets inside the
// frame, sizes) and cleaned, then the frame gathered from guest memory. A
// chain that breaks a rule is dropped with a counted, rate-limited log line
// and completed. When the tap cannot take more (EAGAIN) the chain waits,
// the device waits for the tap to be writable, and nothing is dropped.
//
// A tap whose interface is down (EIO on write) drops each transmitted frame,
// counted, with a rate-limited log line, and works again once it is up. A
// tap that fails (detached or deleted: EBADFD, end of file, an error on
// poll) is logged once and not polled again; the link goes down (STATUS,
// with a configuration change interrupt), a transmit chain waiting for the
// tap is completed, and transmitted frames are then dropped and counted.
//
// A MAC the driver writes lasts until reset, which restores the configured one.
//
// Polling. The device is a Poller of its event source (see VirtioBlk):
// while the loop polls, the driver is told not to kick for transmitted
// frames, nor for receive buffers it posts once the ring ran dry, and the
// rings are looked at on every pass; the tap's readiness is reaped by the
// same loop. When polling ends notifications come back on, with the
// re-check that serves what was made available just before.
//
// Threads. The transport calls in (vCPUs, event loop kicks) holding the
// device's lock; the tap's readiness arrives on the event loop and takes
// that same lock, which covers the queues and all state.

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "virtio/descriptor_chain.h"
#include "vmm/backends/net/net_backend.h"
#include "vmm/backends/net/net_header.h"
#include "virtio/virtio_device.h"
#include "vmm/core/event_sources.h"
#include "vmm/backends/net/mac_address.h"
#include "vmm/core/rate_limited_log.h"

namespace minikvm {

class VirtioNet : public VirtioDevice, private Poller {
public:
    static constexpr unsigned kReceiveQueue = 0;
    static constexpr unsigned kTransmitQueue = 1;
    static constexpr uint16_t kQueueSize = 256;

    // Device feature bits (5.1.3).
    static constexpr unsigned kFeatureCsum = 0;
    static constexpr unsigned kFeatureGuestCsum = 1;
    static constexpr unsigned kFeatureMac = 5;
    static constexpr unsigned kFeatureGuestTso4 = 7;
    static constexpr unsigned kFeatureGuestTso6 = 8;
    static constexpr unsigned kFeatureGuestEcn = 9;
    static constexpr unsigned kFeatureGuestUfo = 10;  // not offered
    static constexpr unsigned kFeatureHostTso4 = 11;
    static constexpr unsigned kFeatureHostTso6 = 12;
    static constexpr unsigned kFeatureHostEcn = 13;
    static constexpr unsigned kFeatureHostUfo = 14;  // not offered
    static constexpr unsigned kFeatureMrgRxbuf = 15;
    static constexpr unsigned kFeatureStatus = 16;

    // Configuration space (5.1.4): mac[6], status le16.
    static constexpr uint32_t kConfigMac = 0;
    static constexpr uint32_t kConfigStatus = 6;
    static constexpr uint32_t kConfigSize = 8;
    static constexpr uint16_t kStatusLinkUp = 1;

    // Frames received per wakeup at most, so kicks and transmits served by
    // the same thread wait at most this long.
    static constexpr unsigned kReceiveBudget = 64;
    // Transmitted bytes after which completed chains are handed back to the
    // driver within one pass, so that it can refill while the rest is sent.
    static constexpr size_t kTransmitPublishBytes = 256 * 1024;

    // `name` prefixes log lines ("virtio-net0"). `watcher` tells when the
    // backend's fd is ready, and polls the rings when it polls; it and the
    // backend must outlive the device.
    VirtioNet(std::string name, std::unique_ptr<NetBackend> backend, MacAddress mac, EventSources& watcher);
    ~VirtioNet() override;
    VirtioNet(const VirtioNet&) = delete;
    VirtioNet& operator=(const VirtioNet&) = delete;

    // VirtioDevice
    static constexpr VirtioDeviceKind kKind{.type = VirtioDeviceType::Net,
                                            .name = "net",
                                            .pci_device_id = 0x1000,
                                            .pci_class = 0x02'00'00,  // network controller, Ethernet
                                            .guest_kconfig = "CONFIG_VIRTIO_NET"};
    const VirtioDeviceKind& kind() const override { return kKind; }
    uint64_t device_features() const override;
    unsigned queue_count() const override { return 2; }
    uint16_t queue_max_size(unsigned) const override { return kQueueSize; }
    uint32_t config_size() const override { return kConfigSize; }
    void read_config(uint32_t offset, std::span<uint8_t> data) override;
    void write_config(uint32_t offset, std::span<const uint8_t> data) override;
    void activate(uint64_t negotiated_features, std::span<VirtQueue> queues,
                  VirtioTransportSignals& signals) override;
    void reset() override;
    void queue_notified(unsigned index) override;
    std::string state_lines() const override;

    struct Counters {
        uint64_t rx_packets = 0;
        uint64_t rx_bytes = 0;  // frame bytes, headers not counted
        uint64_t rx_dropped = 0;
        uint64_t tx_packets = 0;
        uint64_t tx_bytes = 0;
        uint64_t tx_dropped = 0;
    };
    Counters counters() const;
    // "rx 3 packets 180 bytes 0 dropped, tx ...": for the exit log.
    std::string counters_text() const;
    // "(tap NAME): " and the counters.
    std::string exit_summary() const override;
    // EventSources interest bits on the backend now (tests, dump).
    uint32_t backend_interest() const;
    const NetBackend& backend() const { return *backend_; }
    MacAddress mac() const;
    // What the device configured on the tap at the last DRIVER_OK.
    unsigned tap_offloads() const;
    size_t header_size() const;

private:
    // Dropped: a frame was read and dropped here (not into the chains).
    enum class Step { Progress, NoBuffers, NoFrame, Stop, Dropped };

    // One merged frame being delivered (MRG_RXBUF): the chains it fills so
    // far, and what is left of it in rx_buffer_ waiting for more chains.
    struct PendingFrame {
        std::vector<DescriptorChain> chains;
        std::vector<uint32_t> lengths;
        size_t tail_offset = 0;
        size_t tail_length = 0;
        size_t total = 0;
    };

    // All with device_lock() held and the device active.
    void receive();
    void resume_receive();  // buffers came after a dry ring: read the tap again
    Step receive_one();        // without MRG_RXBUF
    Step receive_mergeable();  // with it
    Step finish_pending_frame();
    std::optional<DescriptorChain> next_receive_chain();
    // One readv() of a frame into iov_; Progress with its length, NoFrame
    // when the tap has none, Stop when the tap failed, Dropped when readv()
    // refused iov_ and the frame was thrown away.
    Step read_frame(size_t& length);
    Step drop_unreadable_frame();
    // Checks a frame just read (size, and the header the tap wrote at the
    // start of `first`); counts and logs a drop.
    bool receive_frame_acceptable(const DescriptorChain& first, size_t length, size_t capacity);
    void gather(const DescriptorChain& chain);  // appends its writable buffers to iov_
    void transmit();
    enum class Sent { Done, WouldBlock };
    Sent transmit_chain(const DescriptorChain& chain);
    void flush(unsigned queue_index, std::vector<VirtQueue::UsedElement>& used);
    void update_interest();
    void backend_failed(const std::string& why);
    void drop_in_flight();
    void on_backend_ready(uint32_t ready);

    // Poller, each taking device_lock().
    void begin_polling() override;
    bool poll() override;
    bool end_polling() override;

    void log_rx(const std::string& text);
    void log_tx(const std::string& text);

    const std::string name_;
    const std::unique_ptr<NetBackend> backend_;
    EventSources& watcher_;

    const MacAddress configured_mac_;  // what reset() goes back to
    MacAddress mac_;  // the driver may write it (legacy drivers do, 5.1.4.2)
    std::span<VirtQueue> queues_;  // empty while not active
    VirtioTransportSignals* signals_ = nullptr;
    size_t header_size_ = net::kHeaderSize;
    bool mergeable_ = false;
    net::Offloads tx_offloads_;  // what the driver may send
    net::Offloads rx_offloads_;  // what the tap may hand over (tap_offloads_)
    unsigned tap_offloads_ = 0;
    size_t rx_target_ = 0;  // receive capacity to take ahead with MRG_RXBUF

    uint32_t interest_ = 0;  // what the watcher has now
    // False once the receive ring was found empty with notifications on;
    // the driver's kick sets it again.
    bool rx_ring_may_have_buffers_ = false;
    bool backend_failed_ = false;
    bool polling_ = false;  // between begin_polling() and end_polling()

    // Receive state.
    std::vector<uint8_t> rx_buffer_;           // overflow / waiting tail of one frame
    std::vector<DescriptorChain> rx_chains_;   // popped, not yet filled
    std::optional<PendingFrame> rx_pending_;   // MRG: a frame waiting for chains
    std::vector<VirtQueue::UsedElement> rx_used_;
    std::vector<iovec> iov_;
    // Transmit state.
    std::optional<DescriptorChain> tx_blocked_;  // waits for the tap to be writable
    std::vector<VirtQueue::UsedElement> tx_used_;
    size_t tx_unpublished_bytes_ = 0;  // in tx_used_ since the last flush

    Counters counters_;
    RateLimitedLog rx_log_;
    RateLimitedLog tx_log_;
    RateLimitedLog config_log_;
};

}  // namespace minikvm
