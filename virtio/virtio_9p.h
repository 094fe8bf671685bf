#pragma once
// virtio-9p (the "9P transport", virtio device 9; not in the virtio 1.2
// text, specified by QEMU and Linux's net/9p/trans_virtio.c): one request
// queue whose chains each carry one 9P request (device-readable) and room
// for its reply (device-writable). Feature bit 0 (MOUNT_TAG) offers the
// configuration: a le16 length and the tag the guest mounts by
// (`mount -t 9p -o trans=virtio TAG /mnt`).
//
// The front end only moves messages: on a worker thread it copies a request
// out of the chain, a p9::Server (vmm/backends/p9) answers it, the reply is
// copied into the chain, and the event loop publishes finished chains in
// batches with one interrupt. File data is not copied: Tread's goes from the
// file straight into the chain's buffers (preadv), Twrite's from them to
// the file (pwritev). Requests run in parallel, as 9P allows; the
// one ordering 9P asks for is Tflush's: its Rflush is published only after
// the reply to every earlier request with the flushed tag.
//
// Guest rules: a chain with more request bytes than the largest msize, or
// fewer than a 9P header, completes with nothing written (logged, rate-
// limited); everything inside a message is the server's to judge. A ring
// rule broken stops the device through the transport.
//
// Polling. The device is a Poller of its event source, as virtio-blk is:
// while the loop polls it, the driver is told not to notify (the request
// queue's notifications off), new requests are taken from the ring and
// finished replies published as soon as a worker hands them over; when
// polling ends, notifications go back on and the ring is looked at once
// more. That spares the guest a notify exit per request, and the workers
// their eventfd write per reply (the loop looks for replies itself; after
// polling, once more). The requests themselves still run on the workers,
// never on the polling thread.
//
// Threads: the transport's calls, the completion handler and the poller
// calls hold device_lock(); workers never take it (they hand finished chains
// over under jobs_mutex_), so reset() can wait for them while holding it.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "virtio/used_batch.h"
#include "virtio/virtio_device.h"
#include "vmm/backends/p9/p9_server.h"
#include "vmm/core/event_sources.h"
#include "vmm/core/rate_limited_log.h"
#include "vmm/core/unique_fd.h"
#include "vmm/core/worker_pool.h"

namespace minikvm {

class Virtio9p : public VirtioDevice, private Poller {
public:
    static constexpr unsigned kRequestQueue = 0;
    static constexpr uint16_t kQueueSize = 128;
    static constexpr unsigned kFeatureMountTag = 0;
    static constexpr size_t kMaxTagLength = 255;  // what Linux accepts as a device name
    static constexpr unsigned kWorkerThreads = 4;

    static constexpr VirtioDeviceKind kKind{.type = VirtioDeviceType::NinePTransport,
                                            .name = "9p",
                                            .pci_device_id = 0x1009,
                                            .pci_class = 0x00'ff'00,  // unclassified, "other"
                                            .guest_kconfig = "CONFIG_NET_9P_VIRTIO (with CONFIG_9P_FS)"};

    // `name` prefixes log lines ("virtio-9p0"); `tag` (1..kMaxTagLength
    // bytes) is what the guest mounts. `events` hears completions and must
    // outlive the device.
    Virtio9p(std::string name, std::string tag, std::unique_ptr<p9::Server> server, EventSources& events,
             unsigned threads = kWorkerThreads);
    ~Virtio9p() override;
    Virtio9p(const Virtio9p&) = delete;
    Virtio9p& operator=(const Virtio9p&) = delete;

    // VirtioDevice
    const VirtioDeviceKind& kind() const override { return kKind; }
    uint64_t device_features() const override;
    unsigned queue_count() const override { return 1; }
    uint16_t queue_max_size(unsigned) const override { return kQueueSize; }
    uint32_t config_size() const override { return static_cast<uint32_t>(2 + tag_.size()); }
    void read_config(uint32_t offset, std::span<uint8_t> data) override;
    void write_config(uint32_t offset, std::span<const uint8_t> data) override;
    void activate(uint64_t negotiated_features, std::span<VirtQueue> queues,
                  VirtioTransportSignals& signals) override;
    void reset() override;
    void queue_notified(unsigned index) override;
    std::string state_lines() const override;
    std::string exit_summary() const override;

    const p9::Server& server() const { return *server_; }
    // Blocks until every request taken so far has been answered and
    // published (tests).
    void wait_idle();

private:
    struct Finished {
        uint16_t head;
        uint32_t written;
    };

    // Poller, each with device_lock() taken.
    void begin_polling() override;
    bool poll() override;
    bool end_polling() override;

    // With device_lock() held.
    void process_queue();
    void start(DescriptorChain chain);
    void publish_finished();
    // publish_finished() if a worker has handed a reply over; whether one had.
    bool publish_if_finished();
    // Whether workers write finished_fd_ for their replies (signal_finished_).
    void signal_replies(bool on);
    void drain();

    // On a worker.
    void serve(const DescriptorChain& chain, uint64_t sequence);

    const std::string name_;
    const std::string tag_;
    std::unique_ptr<p9::Server> server_;
    EventSources& events_;
    UniqueFd finished_fd_;  // eventfd: workers -> event loop

    std::span<VirtQueue> queues_;  // empty while not active
    VirtioTransportSignals* signals_ = nullptr;
    UsedBatch used_;

    mutable std::mutex jobs_mutex_;
    std::condition_variable job_done_;
    std::map<uint64_t, uint16_t> in_flight_;  // sequence -> tag, for Tflush
    std::vector<Finished> finished_;
    // Whether finished_ holds anything: what poll() looks at, without the
    // mutex the workers take.
    std::atomic<bool> has_finished_{false};
    // Whether a worker writes finished_fd_ for its reply: not while the
    // event loop polls (begin_polling() to end_polling()).
    bool signal_finished_ = true;
    uint64_t next_sequence_ = 0;
    bool polling_ = false;  // between begin_polling() and end_polling()
    std::vector<Finished> publishing_;  // publish_finished()'s, kept to spare an allocation

    uint64_t rejected_ = 0;  // chains that carried no usable message
    RateLimitedLog log_;
    WorkerPool workers_;  // last: its threads use everything above
};

}  // namespace minikvm
