#include "virtio/virtio_blk.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "virtio/split_ring.h"

namespace minikvm {

namespace {

constexpr uint64_t bit(unsigned n) { return uint64_t{1} << n; }
constexpr uint64_t kPage = 4096;

void put_le(std::array<uint8_t, VirtioBlk::kConfigSize>& bytes, uint32_t offset, uint64_t value, int count) {
    for (int i = 0; i < count; ++i) bytes[offset + i] = static_cast<uint8_t>(value >> (8 * i));
}

uint64_t features_for(const DiskImage& image) {
    uint64_t features = bit(VirtioBlk::kFeatureSizeMax) | bit(VirtioBlk::kFeatureSegMax) |
                        bit(VirtioBlk::kFeatureBlkSize) | bit(VirtioBlk::kFeatureFlush) |
                        bit(split_ring::kFeatureIndirectDesc) | bit(split_ring::kFeatureEventIdx);
    // A read-only disk offers RO, and nothing that would change it.
    if (image.read_only()) features |= bit(VirtioBlk::kFeatureRo);
    else features |= bit(VirtioBlk::kFeatureDiscard) | bit(VirtioBlk::kFeatureWriteZeroes);
    return features;
}

// The guest's logical block: what direct I/O on the host needs, at least 512.
uint32_t block_size_for(const DiskImage& image) {
    return image.direct() ? std::max(image.offset_alignment(), blk::kSectorSize) : blk::kSectorSize;
}

std::unique_ptr<BlockBackend> open_backend(const std::string& name, DiskImage image, const DiskConfig& config) {
    std::string fallback_reason;
    auto backend = std::make_unique<BlockBackend>(std::move(image), config.aio, VirtioBlk::kQueueSize, fallback_reason);
    if (!fallback_reason.empty())
        spdlog::warn("{}: io_uring is not available ({}); using a thread pool for I/O", name, fallback_reason);
    return backend;
}

const char* status_name(uint8_t status) {
    switch (status) {
        case blk::kStatusOk: return "OK";
        case blk::kStatusIoErr: return "IOERR";
        default: return "UNSUPP";
    }
}

}  // namespace

VirtioBlk::VirtioBlk(std::string name, DiskImage image, const DiskConfig& config, EventSources& events)
    : name_(std::move(name)),
      serial_(config.serial),
      features_(features_for(image)),
      blk_size_(block_size_for(image)),
      events_(events),
      backend_(open_backend(name_, std::move(image), config)),
      requests_(kQueueSize) {
    const DiskImage& disk = backend_->image();
    spdlog::info("{}: '{}', {} sectors, {}, cache={}, {} I/O{}", name_, disk.path(), disk.sectors(),
                 disk.read_only() ? "read-only" : "read-write", disk.direct() ? "none" : "writeback",
                 backend_->engine_name(),
                 blk_size_ != blk::kSectorSize ? fmt::format(", {}-byte blocks", blk_size_) : "");
    events_.watch(backend_->completion_fd(), EventSources::kReadable, [this](uint32_t) {
        std::lock_guard lock(device_lock());
        backend_->acknowledge_completion_fd();
        on_completions(false);
    });
    events_.add_poller(*this);
}

VirtioBlk::~VirtioBlk() {
    // No completion handler or poll may run past this point...
    events_.remove_poller(*this);
    events_.unwatch(backend_->completion_fd());
    // ...and nothing may be in flight when the backend and the file go.
    std::lock_guard lock(device_lock());
    drain();
    queues_ = {};
    signals_ = nullptr;
}

// --- Configuration space ----------------------------------------------------

void VirtioBlk::read_config(uint32_t offset, std::span<uint8_t> data) {
    std::array<uint8_t, kConfigSize> bytes{};
    put_le(bytes, kConfigCapacity, backend_->image().sectors(), 8);
    put_le(bytes, kConfigSizeMax, kSizeMax, 4);
    put_le(bytes, kConfigSegMax, kSegMax, 4);
    put_le(bytes, kConfigBlkSize, blk_size_, 4);
    if (!backend_->image().read_only()) {
        put_le(bytes, kConfigMaxDiscardSectors, kMaxDiscardSectors, 4);
        put_le(bytes, kConfigMaxDiscardSeg, kMaxDiscardSegments, 4);
        // A hint for the driver: the host filesystem's block (or ours).
        put_le(bytes, kConfigDiscardSectorAlignment, std::max<uint64_t>(blk_size_, kPage) / blk::kSectorSize, 4);
        put_le(bytes, kConfigMaxWriteZeroesSectors, kMaxWriteZeroesSectors, 4);
        put_le(bytes, kConfigMaxWriteZeroesSeg, kMaxWriteZeroesSegments, 4);
        bytes[kConfigWriteZeroesMayUnmap] = 1;  // UNMAP punches a hole
    }
    std::copy_n(bytes.begin() + offset, data.size(), data.begin());
}

void VirtioBlk::write_config(uint32_t offset, std::span<const uint8_t> data) {
    // Without CONFIG_WCE every field is read-only (5.2.4).
    log_request(spdlog::level::warn,
                fmt::format("{}-byte write to read-only configuration offset {}; ignored", data.size(), offset));
}

// --- Lifecycle ----------------------------------------------------------------

void VirtioBlk::activate(uint64_t negotiated_features, std::span<VirtQueue> queues,
                         VirtioTransportSignals& signals) {
    queues_ = queues;
    signals_ = &signals;
    limits_ = blk::Limits{};
    limits_.capacity = backend_->image().sectors();
    limits_.read_only = backend_->image().read_only();  // whether or not the driver accepted RO
    limits_.flush = (negotiated_features & bit(kFeatureFlush)) != 0;
    limits_.discard = (negotiated_features & bit(kFeatureDiscard)) != 0;
    limits_.write_zeroes = (negotiated_features & bit(kFeatureWriteZeroes)) != 0;
    // A driver that did not accept a limit cannot be held to it.
    limits_.seg_max = (negotiated_features & bit(kFeatureSegMax)) != 0 ? kSegMax : UINT32_MAX;
    limits_.size_max = (negotiated_features & bit(kFeatureSizeMax)) != 0 ? kSizeMax : UINT32_MAX;
    limits_.max_discard_sectors = kMaxDiscardSectors;
    limits_.max_discard_segments = kMaxDiscardSegments;
    limits_.max_write_zeroes_sectors = kMaxWriteZeroesSectors;
    limits_.max_write_zeroes_segments = kMaxWriteZeroesSegments;
    // A legacy driver may have queued requests and kicked before DRIVER_OK.
    process_queue();
}

void VirtioBlk::reset() {
    drain();
    queues_ = {};
    signals_ = nullptr;
    limits_ = blk::Limits{};
}

void VirtioBlk::queue_notified(unsigned index) {
    if (queues_.empty() || index != kRequestQueue) return;
    process_queue();
}

// --- Polling ------------------------------------------------------------------

void VirtioBlk::begin_polling() {
    std::lock_guard lock(device_lock());
    polling_ = true;
    // poll() looks at the completions itself: no wake-up per completion.
    backend_->set_completion_signal(false);
    if (!queues_.empty() && queues_[kRequestQueue].ready()) queues_[kRequestQueue].disable_notifications();
}

bool VirtioBlk::poll() {
    std::lock_guard lock(device_lock());
    const bool completed = reap_ready_completions();
    if (queues_.empty()) return completed;
    VirtQueue& queue = queues_[kRequestQueue];
    // A broken queue was reported when it broke; has_available() says no.
    if (!queue.has_available()) return completed;
    process_queue();
    return true;
}

bool VirtioBlk::end_polling() {
    std::lock_guard lock(device_lock());
    polling_ = false;
    // What finished while the signal was off signalled nothing: looked for
    // once more after turning it on.
    backend_->set_completion_signal(true);
    const bool completed = reap_ready_completions();
    if (queues_.empty()) return completed;
    VirtQueue& queue = queues_[kRequestQueue];
    // enable_notifications() re-checks the ring after the switch (false for
    // a queue not ready or broken): a request made available just before it
    // gets no kick, so it is taken here.
    if (!queue.enable_notifications()) return completed;
    process_queue();
    return true;
}

void VirtioBlk::wait_idle() {
    std::lock_guard lock(device_lock());
    while (backend_->in_flight() > 0) on_completions(true);
}

VirtioBlk::Stats VirtioBlk::stats() const {
    std::lock_guard lock(device_lock());
    Stats stats = stats_;
    stats.bounced = backend_->bounced();
    return stats;
}

// --- Requests: parse -> submit -> finish -> push ------------------------------------

void VirtioBlk::process_queue() {
    VirtQueue& queue = queues_[kRequestQueue];
    if (!queue.ready()) return;
    // Kicks are pointless while we are taking everything there is anyway,
    // and while polling.
    do {
        queue.disable_notifications();
        while (auto chain = queue.pop()) start_request(std::move(*chain));
    } while (!polling_ && !queue.broken() && queue.enable_notifications());
    if (queue.broken()) signals_->signal_device_broken(queue.broken_reason());
    backend_->kick();  // one batch for everything this kick found
    publish();         // what completed at once (get ID, rejected requests...)
}

void VirtioBlk::start_request(DescriptorChain chain) {
    const uint16_t head = chain.head;
    InFlight& slot = requests_[head];
    if (slot.busy) {
        // The queue hands out a head only once until it is pushed back, so
        // the driver made a chain available that is still in use.
        signals_->signal_device_broken(
            fmt::format("virtio 1.2 2.7.13.3: chain head {} made available again while the device still uses it",
                        head));
        return;
    }
    slot.busy = true;
    slot.chain = std::move(chain);
    slot.request = blk::parse_request(slot.chain, limits_);
    const blk::Request& request = slot.request;
    const DiskImage& disk = backend_->image();

    switch (request.kind) {
        case blk::Kind::NoStatus:
            log_request(spdlog::level::warn,
                        fmt::format("request at head {}: {}; completed with used length 0", head, request.problem));
            complete(head, blk::kStatusIoErr, 0);  // writes nothing: there is no writable byte
            return;
        case blk::Kind::Complete:
            log_request(request.status == blk::kStatusUnsupp ? spdlog::level::info : spdlog::level::warn,
                        fmt::format("request at head {} ({}, sector {}): {}; completed with {}", head,
                                    blk::type_name(request.type), request.sector, request.problem,
                                    status_name(request.status)));
            complete(head, request.status, 0);
            return;
        case blk::Kind::GetId: {
            std::array<uint8_t, blk::kIdBytes> id{};  // NUL-padded; no NUL when 20 long
            std::copy_n(serial_.begin(), std::min<size_t>(serial_.size(), id.size()), id.begin());
            slot.chain.write(0, id);
            complete(head, blk::kStatusOk, id.size());
            return;
        }
        case blk::Kind::Flush:
            if (disk.read_only()) {
                complete(head, blk::kStatusOk, 0);  // nothing was ever written
                return;
            }
            break;
        case blk::Kind::Read:
        case blk::Kind::Write:
            if (request.data_length == 0) {
                complete(head, blk::kStatusOk, 0);
                return;
            }
            if (!backend_->aligned(request.sector * blk::kSectorSize, request.data_length)) {
                log_request(spdlog::level::warn,
                            fmt::format("request at head {} ({}, sectors {}+{}): not aligned to the {}-byte blocks "
                                        "direct I/O needs on this host (blk_size says so); completed with IOERR",
                                        head, blk::type_name(request.type), request.sector,
                                        request.data_length / blk::kSectorSize, disk.offset_alignment()));
                complete(head, blk::kStatusIoErr, 0);
                return;
            }
            break;
        case blk::Kind::Discard:
        case blk::Kind::WriteZeroes: {
            bool any = false;
            for (const blk::Segment& segment : request.segments) any = any || segment.sectors != 0;
            if (!any) {
                complete(head, blk::kStatusOk, 0);
                return;
            }
            break;
        }
    }
    backend_->submit(backend_request(head));
}

BlockRequest VirtioBlk::backend_request(uint16_t head) const {
    const blk::Request& request = requests_[head].request;
    BlockRequest out;
    out.cookie = head;
    out.offset = request.sector * blk::kSectorSize;  // in range: sector <= capacity < 2^55
    switch (request.kind) {
        case blk::Kind::Read:
            out.kind = BlockRequest::Kind::Read;
            for (std::span<uint8_t> buffer : request.read_buffers) out.buffers.push_back({buffer.data(), buffer.size()});
            break;
        case blk::Kind::Write:
            out.kind = BlockRequest::Kind::Write;
            // The backend only reads through these pointers.
            for (std::span<const uint8_t> buffer : request.write_buffers)
                out.buffers.push_back({const_cast<uint8_t*>(buffer.data()), buffer.size()});
            break;
        case blk::Kind::Flush: out.kind = BlockRequest::Kind::Flush; break;
        default:
            out.kind = request.kind == blk::Kind::Discard ? BlockRequest::Kind::Discard
                                                          : BlockRequest::Kind::WriteZeroes;
            for (const blk::Segment& segment : request.segments)
                if (segment.sectors != 0)
                    out.ranges.push_back({segment.sector * blk::kSectorSize,
                                          uint64_t{segment.sectors} * blk::kSectorSize, segment.unmap});
            break;
    }
    return out;
}

bool VirtioBlk::reap_ready_completions() {
    // Looked for without a system call; reaped only when there.
    return backend_->in_flight() > 0 && backend_->completions_ready() && on_completions(false);
}

bool VirtioBlk::on_completions(bool wait) {
    completions_.clear();
    backend_->reap(completions_, wait);
    for (const BlockCompletion& completion : completions_) {
        const uint64_t head = completion.cookie;
        if (head >= requests_.size() || !requests_[head].busy) {
            spdlog::error("{}: device bug: completion for head {}, which is not in flight", name_, head);
            continue;
        }
        const blk::Request& request = requests_[head].request;
        if (completion.error != 0) {
            log_request(spdlog::level::err,
                        fmt::format("{} at sector {} failed on the host: {}; completed with IOERR",
                                    blk::type_name(request.type), request.sector, std::strerror(completion.error)));
            complete(static_cast<uint16_t>(head), blk::kStatusIoErr, 0);
        } else {
            complete(static_cast<uint16_t>(head), blk::kStatusOk,
                     request.kind == blk::Kind::Read ? request.data_length : 0);
        }
    }
    publish();
    return !completions_.empty();
}

void VirtioBlk::complete(uint16_t head, uint8_t status, uint64_t produced) {
    InFlight& slot = requests_[head];
    const uint32_t used = blk::finish_request(slot.chain, status, produced);
    ++stats_.completed;
    if (status == blk::kStatusIoErr) ++stats_.errors;
    if (status == blk::kStatusUnsupp) ++stats_.unsupported;
    used_.add(head, used);
    slot = InFlight{};
}

void VirtioBlk::publish() {
    if (queues_.empty()) {
        used_.clear();  // reset: the driver expects nothing back
        return;
    }
    used_.publish(queues_[kRequestQueue], *signals_);
}

void VirtioBlk::drain() {
    // What has not started is cancelled; what runs may still write into
    // guest memory, so the backend waits for it. Results are dropped: after
    // a reset the driver expects nothing back.
    backend_->cancel_all();
    for (InFlight& slot : requests_) slot = InFlight{};
    used_.clear();
}

void VirtioBlk::log_request(spdlog::level::level_enum level, const std::string& text) {
    request_log_.log(level, fmt::format("{}: {}", name_, text));
}

}  // namespace minikvm
