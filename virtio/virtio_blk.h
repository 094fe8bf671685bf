#pragma once
// virtio-blk (virtio 1.2 section 5.2) over a disk image, with one request
// queue and asynchronous I/O.
//
// Offered: SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH, DISCARD, WRITE_ZEROES, RO for
// read-only images, and the ring features INDIRECT_DESC and EVENT_IDX. No
// CONFIG_WCE: the cache is always write-back as far as the guest knows, and
// FLUSH is what makes writes durable (fdatasync), for cache=none too, since
// the host disk has a cache of its own.
//
// A request goes parse -> submit -> finish -> push:
//   - virtio/blk_request parses it and states every rule the driver can break;
//   - the BlockBackend does the file work (short transfers, O_DIRECT bounce
//     buffers, flush as a barrier, the discard / write-zeroes fallbacks; see
//     vmm/backends/block/block_backend.h) and hands back one completion per
//     request, the chain head as its cookie;
//   - blk::finish_request() writes the status and zeroes what the device did
//     not produce, so the used length (every writable byte: data + status
//     for a good read, 1 for a write) is exactly what it wrote;
//   - a UsedBatch publishes every completion of one round at once and
//     raises at most one interrupt.
// Device-level answers: get ID (the serial, NUL-padded to 20 bytes), a
// flush on a read-only disk (nothing to do), an empty transfer. With
// cache=none a transfer not aligned to the host's direct-I/O block (which
// blk_size states) fails with IOERR. A request the parser rejects completes
// at once with IOERR or UNSUPP and one rate-limited log line; a ring-rule
// violation stops the device through the transport.
//
// Threads. The transport calls in from vCPUs and the event loop; I/O
// completions arrive on the event loop through the backend's completion fd.
// The device's one lock (device_lock(), which the transport holds around
// its calls and the completion handler takes) covers the queue, the
// requests in flight and the backend. reset() and the destructor wait for every operation in flight
// (cancelling those not yet started), so no I/O touches guest memory after
// they return.
//
// Polling. The device is a Poller of its event source: while the loop
// polls it, the driver is told not to notify (VRING_USED_F_NO_NOTIFY, or
// avail_event left behind with EVENT_IDX), new requests are taken from the
// ring and completions reaped as soon as they are there; when polling ends,
// notifications go back on and the ring is looked at once more.

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "virtio/blk_request.h"
#include "virtio/used_batch.h"
#include "virtio/virtio_device.h"
#include "vmm/backends/block/block_backend.h"
#include "vmm/backends/block/disk_config.h"
#include "vmm/backends/block/disk_image.h"
#include "vmm/core/event_sources.h"
#include "vmm/core/rate_limited_log.h"

namespace minikvm {

class VirtioBlk : public VirtioDevice, private Poller {
public:
    static constexpr unsigned kRequestQueue = 0;
    static constexpr uint16_t kQueueSize = 256;

    // Device feature bits (5.2.3).
    static constexpr unsigned kFeatureSizeMax = 1;
    static constexpr unsigned kFeatureSegMax = 2;
    static constexpr unsigned kFeatureRo = 5;
    static constexpr unsigned kFeatureBlkSize = 6;
    static constexpr unsigned kFeatureFlush = 9;
    static constexpr unsigned kFeatureDiscard = 13;
    static constexpr unsigned kFeatureWriteZeroes = 14;

    // Configuration space (5.2.4), guest-native (little) endian in legacy mode.
    static constexpr uint32_t kConfigCapacity = 0;        // le64
    static constexpr uint32_t kConfigSizeMax = 8;         // le32
    static constexpr uint32_t kConfigSegMax = 12;         // le32
    static constexpr uint32_t kConfigGeometry = 16;       // le16 cylinders, u8 heads, u8 sectors: unused
    static constexpr uint32_t kConfigBlkSize = 20;        // le32
    static constexpr uint32_t kConfigTopology = 24;       // 8 bytes, no TOPOLOGY: 0
    static constexpr uint32_t kConfigWriteback = 32;      // u8, no CONFIG_WCE: 0; then unused0, num_queues
    static constexpr uint32_t kConfigMaxDiscardSectors = 36;
    static constexpr uint32_t kConfigMaxDiscardSeg = 40;
    static constexpr uint32_t kConfigDiscardSectorAlignment = 44;
    static constexpr uint32_t kConfigMaxWriteZeroesSectors = 48;
    static constexpr uint32_t kConfigMaxWriteZeroesSeg = 52;
    static constexpr uint32_t kConfigWriteZeroesMayUnmap = 56;  // u8, then unused1[3]
    static constexpr uint32_t kConfigSize = 60;

    // Limits offered in the configuration space.
    static constexpr uint32_t kSegMax = kQueueSize - 2;  // header and status take a descriptor each
    static constexpr uint32_t kSizeMax = 1u << 20;
    static constexpr uint32_t kMaxDiscardSectors = 1u << 22;  // 2 GiB per segment
    static constexpr uint32_t kMaxDiscardSegments = 16;
    static constexpr uint32_t kMaxWriteZeroesSectors = 1u << 22;
    static constexpr uint32_t kMaxWriteZeroesSegments = 16;
    // `name` prefixes log lines ("virtio-blk0"). `events` hears completions
    // and must outlive the device. Throws std::system_error when no I/O
    // engine can be set up.
    VirtioBlk(std::string name, DiskImage image, const DiskConfig& config, EventSources& events);
    ~VirtioBlk() override;
    VirtioBlk(const VirtioBlk&) = delete;
    VirtioBlk& operator=(const VirtioBlk&) = delete;

    // VirtioDevice
    static constexpr VirtioDeviceKind kKind{.type = VirtioDeviceType::Block,
                                            .name = "block",
                                            .pci_device_id = 0x1001,
                                            .pci_class = 0x01'00'00,  // mass storage, SCSI (as QEMU)
                                            .guest_kconfig = "CONFIG_VIRTIO_BLK"};
    const VirtioDeviceKind& kind() const override { return kKind; }
    uint64_t device_features() const override { return features_; }
    unsigned queue_count() const override { return 1; }
    uint16_t queue_max_size(unsigned) const override { return kQueueSize; }
    uint32_t config_size() const override { return kConfigSize; }
    void read_config(uint32_t offset, std::span<uint8_t> data) override;
    void write_config(uint32_t offset, std::span<const uint8_t> data) override;
    void activate(uint64_t negotiated_features, std::span<VirtQueue> queues,
                  VirtioTransportSignals& signals) override;
    void reset() override;
    void queue_notified(unsigned index) override;

    // "io_uring" or "thread pool".
    const char* io_engine() const { return backend_->engine_name(); }
    // Blocks until no request is in flight, completing them (tests).
    void wait_idle();

    struct Stats {
        uint64_t completed = 0;  // requests, every outcome
        uint64_t errors = 0;     // completed with IOERR (the guest's or the host's fault)
        uint64_t unsupported = 0;
        uint64_t bounced = 0;    // read/write through a bounce buffer
    };
    Stats stats() const;

private:
    // Poller, each with device_lock() taken.
    void begin_polling() override;
    bool poll() override;
    bool end_polling() override;

    // A request between parse and push, indexed by its chain head (unique
    // among the chains in flight).
    struct InFlight {
        bool busy = false;
        DescriptorChain chain;
        blk::Request request;
    };

    // All with device_lock() held.
    void process_queue();
    void start_request(DescriptorChain chain);
    BlockRequest backend_request(uint16_t head) const;
    // Whether it completed anything.
    bool on_completions(bool wait);
    // on_completions(false) if the backend has any now (a poller's look).
    bool reap_ready_completions();
    void complete(uint16_t head, uint8_t status, uint64_t produced);
    void publish();
    void drain();

    void log_request(spdlog::level::level_enum level, const std::string& text);

    const std::string name_;
    const std::string serial_;
    const uint64_t features_;
    const uint32_t blk_size_;
    EventSources& events_;

    std::unique_ptr<BlockBackend> backend_;
    std::span<VirtQueue> queues_;  // empty while not active
    bool polling_ = false;         // between begin_polling() and end_polling()
    VirtioTransportSignals* signals_ = nullptr;
    blk::Limits limits_;
    std::vector<InFlight> requests_;
    UsedBatch used_;
    std::vector<BlockCompletion> completions_;  // reused by on_completions()
    Stats stats_;
    RateLimitedLog request_log_;
};

}  // namespace minikvm
