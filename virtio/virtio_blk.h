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
// Requests (parsed by virtio/blk_request, which also states every rule):
//   - read/write: one preadv/pwritev on the image; a short transfer goes on
//     where it stopped. With cache=none (O_DIRECT) a request whose buffers
//     are not aligned as the host's direct I/O wants goes through a bounce
//     buffer; bounce memory in flight is bounded (kBounceBudget), requests
//     over it wait for earlier ones.
//   - flush: fdatasync as a barrier: it starts once every request started
//     before it (every completed write in particular) has finished, and
//     nothing started after it runs before it is done.
//   - discard: a hole is punched (FALLOC_FL_PUNCH_HOLE); where the host
//     cannot, the discard is still a success (it is only a hint).
//   - write zeroes: a punched hole with UNMAP, else FALLOC_FL_ZERO_RANGE;
//     where the host supports neither, zeros are written.
//   - get ID: the serial, NUL-padded to 20 bytes.
// A request the parser rejects completes at once with IOERR or UNSUPP and
// one rate-limited log line; a ring-rule violation stops the device through
// the transport. The used length is every writable byte (data + status for a
// good read, 1 for a write): finish_request() zeroes what the device did not
// produce, so that length is exactly what it wrote.
//
// Threads. The transport serializes its calls (vCPUs, event loop); I/O
// completions arrive on the event loop thread through the engine's eventfd.
// One mutex covers the queue, the requests in flight and the engine. reset()
// and the destructor wait for every operation in flight (cancelling those
// not yet started), so no I/O touches guest memory after they return.

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "virtio/blk_request.h"
#include "virtio/virtio_device.h"
#include "vmm/block_io.h"
#include "vmm/disk_config.h"
#include "vmm/disk_image.h"
#include "vmm/rate_limited_log.h"

namespace minikvm {

class EventLoop;

class VirtioBlk : public VirtioDevice {
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
    // Bounce memory in flight at most (a request needing more runs alone).
    static constexpr uint64_t kBounceBudget = 64u << 20;

    // `name` prefixes log lines ("virtio-blk0"). `loop` hears completions and
    // must outlive the device. Throws std::system_error when no I/O engine
    // can be set up.
    VirtioBlk(std::string name, DiskImage image, const DiskConfig& config, EventLoop& loop);
    ~VirtioBlk() override;
    VirtioBlk(const VirtioBlk&) = delete;
    VirtioBlk& operator=(const VirtioBlk&) = delete;

    // VirtioDevice
    VirtioDeviceType device_type() const override { return VirtioDeviceType::Block; }
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
    // Completions use the queue from the event loop: hold the device lock.
    void inspect_queues(const std::function<void()>& inspect) override;

    // "io_uring" or "thread pool".
    const char* io_engine() const { return io_->name(); }
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
    // Where one request stands. Indexed by its chain head: a head is unique
    // among the chains in flight.
    struct Operation {
        enum class Step : uint8_t { Transfer, Flush, Discard, PunchZeroes, ZeroRange, WriteZeroes };
        Step step = Step::Transfer;
        BlockIoOp::Kind kind = BlockIoOp::Kind::Read;
        uint64_t offset = 0;
        uint64_t length = 0;
        uint64_t done = 0;        // bytes transferred so far (Transfer, WriteZeroes)
        std::vector<iovec> iov;  // what is left to transfer; stable while in flight
    };
    struct Slot {
        bool busy = false;
        bool started = false;  // false while waiting for bounce budget
        DescriptorChain chain;
        blk::Request request;
        std::vector<Operation> operations;
        unsigned pending = 0;  // operations not finished
        uint8_t status = blk::kStatusOk;
        int error = 0;  // first host errno
        uint8_t* bounce = nullptr;
        uint64_t bounce_size = 0;
    };

    // All with mutex_ held.
    void process_queue();
    void start_request(DescriptorChain chain);
    bool needs_bounce(const Slot& slot) const;
    void launch(uint16_t head);  // allocates the bounce, queues the operations
    void queue_operation(uint16_t head, unsigned index);
    void on_completion(const BlockIoCompletion& completion);
    void finish(uint16_t head);  // every operation of the request is done
    void complete(Slot& slot, uint8_t status, uint64_t produced);
    void release(Slot& slot);
    void interrupt_if_needed();
    void process_completions(bool wait);
    void start_deferred();
    void drain();

    void log_request(spdlog::level::level_enum level, const std::string& text);

    const std::string name_;
    const DiskImage image_;
    const std::string serial_;
    const uint64_t features_;
    const uint32_t blk_size_;
    EventLoop& loop_;
    std::unique_ptr<BlockIo> io_;

    mutable std::mutex mutex_;
    std::span<VirtQueue> queues_;  // empty while not active
    VirtioTransportSignals* signals_ = nullptr;
    blk::Limits limits_;
    std::vector<Slot> slots_;
    unsigned busy_ = 0;  // slots in use
    std::deque<uint16_t> deferred_;  // heads waiting for bounce budget, in order
    uint64_t bounce_in_use_ = 0;
    bool completed_since_interrupt_ = false;
    uint8_t* zeros_ = nullptr;  // kSizeMax zero bytes, aligned for O_DIRECT: the last write-zeroes resort
    Stats stats_;
    RateLimitedLog request_log_;
};

}  // namespace minikvm
