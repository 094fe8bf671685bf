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
#include "vmm/event_loop.h"

namespace minikvm {

namespace {

constexpr uint64_t bit(unsigned n) { return uint64_t{1} << n; }
constexpr uint64_t kPage = 4096;

uint64_t round_up(uint64_t value, uint64_t to) { return (value + to - 1) / to * to; }

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

// Drops the first `bytes` bytes of `iov` (after a short transfer).
void advance(std::vector<iovec>& iov, uint64_t bytes) {
    size_t first = 0;
    while (first < iov.size() && bytes >= iov[first].iov_len) {
        bytes -= iov[first].iov_len;
        ++first;
    }
    iov.erase(iov.begin(), iov.begin() + static_cast<std::ptrdiff_t>(first));
    if (!iov.empty() && bytes != 0) {
        iov[0].iov_base = static_cast<uint8_t*>(iov[0].iov_base) + bytes;
        iov[0].iov_len -= bytes;
    }
}

const char* status_name(uint8_t status) {
    switch (status) {
        case blk::kStatusOk: return "OK";
        case blk::kStatusIoErr: return "IOERR";
        default: return "UNSUPP";
    }
}

}  // namespace

VirtioBlk::VirtioBlk(std::string name, DiskImage image, const DiskConfig& config, EventLoop& loop)
    : name_(std::move(name)),
      image_(std::move(image)),
      serial_(config.serial),
      features_(features_for(image_)),
      blk_size_(block_size_for(image_)),
      loop_(loop),
      slots_(kQueueSize) {
    std::string fallback_reason;
    // The queue can hold kQueueSize requests, each one operation at a time
    // but for discard/write-zeroes segments: room for all of them.
    io_ = make_block_io(image_.fd(), config.aio, kQueueSize, fallback_reason);
    if (!fallback_reason.empty())
        spdlog::warn("{}: io_uring is not available ({}); using a thread pool for I/O", name_, fallback_reason);
    spdlog::info("{}: '{}', {} sectors, {}, cache={}, {} I/O{}", name_, image_.path(), image_.sectors(),
                 image_.read_only() ? "read-only" : "read-write", image_.direct() ? "none" : "writeback",
                 io_->name(), blk_size_ != blk::kSectorSize ? fmt::format(", {}-byte blocks", blk_size_) : "");
    const int completion_fd = io_->completion_fd();
    loop_.add(completion_fd, [this, completion_fd] {
        uint64_t count = 0;
        // One read empties the counter; EAGAIN means another thread reaped first.
        [[maybe_unused]] ssize_t n = ::read(completion_fd, &count, sizeof count);
        std::lock_guard lock(mutex_);
        process_completions(false);
    });
}

VirtioBlk::~VirtioBlk() {
    // No completion handler may run past this point...
    loop_.remove(io_->completion_fd());
    {
        // ...and nothing may be in flight when the engine and the file go.
        std::lock_guard lock(mutex_);
        drain();
        queues_ = {};
        signals_ = nullptr;
    }
    // Writes the guest never flushed still reach the disk (as QEMU does on close).
    if (!image_.read_only() && ::fdatasync(image_.fd()) != 0)
        spdlog::warn("{}: fdatasync of '{}' at exit: {}", name_, image_.path(), std::strerror(errno));
    std::free(zeros_);
}

// --- Configuration space ----------------------------------------------------

void VirtioBlk::read_config(uint32_t offset, std::span<uint8_t> data) {
    std::array<uint8_t, kConfigSize> bytes{};
    put_le(bytes, kConfigCapacity, image_.sectors(), 8);
    put_le(bytes, kConfigSizeMax, kSizeMax, 4);
    put_le(bytes, kConfigSegMax, kSegMax, 4);
    put_le(bytes, kConfigBlkSize, blk_size_, 4);
    if (!image_.read_only()) {
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
    std::lock_guard lock(mutex_);
    queues_ = queues;
    signals_ = &signals;
    limits_ = blk::Limits{};
    limits_.capacity = image_.sectors();
    limits_.read_only = image_.read_only();  // whether or not the driver accepted RO
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
    std::lock_guard lock(mutex_);
    drain();
    queues_ = {};
    signals_ = nullptr;
    limits_ = blk::Limits{};
}

void VirtioBlk::inspect_queues(const std::function<void()>& inspect) {
    std::lock_guard lock(mutex_);
    inspect();
}

void VirtioBlk::queue_notified(unsigned index) {
    std::lock_guard lock(mutex_);
    if (queues_.empty() || index != kRequestQueue) return;
    process_queue();
}

void VirtioBlk::wait_idle() {
    std::lock_guard lock(mutex_);
    while (busy_ > 0 && io_->in_flight() > 0) process_completions(true);
}

VirtioBlk::Stats VirtioBlk::stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
}

// --- Requests -------------------------------------------------------------------

void VirtioBlk::process_queue() {
    VirtQueue& queue = queues_[kRequestQueue];
    if (!queue.ready()) return;
    // Kicks are pointless while we are taking everything there is anyway.
    do {
        queue.disable_notifications();
        while (auto chain = queue.pop()) start_request(std::move(*chain));
    } while (!queue.broken() && queue.enable_notifications());
    if (queue.broken()) signals_->signal_device_broken(queue.broken_reason());
    io_->submit();  // one batch for everything this kick found
    interrupt_if_needed();
}

void VirtioBlk::start_request(DescriptorChain chain) {
    const uint16_t head = chain.head;
    Slot& slot = slots_[head];
    if (slot.busy) {
        // The queue hands out a head only once until it is pushed back, so
        // the driver made a chain available that is still in use.
        signals_->signal_device_broken(
            fmt::format("virtio 1.2 2.7.13.3: chain head {} made available again while the device still uses it",
                        head));
        return;
    }
    slot.busy = true;
    ++busy_;
    slot.chain = std::move(chain);
    slot.request = blk::parse_request(slot.chain, limits_);
    const blk::Request& request = slot.request;
    const uint64_t offset = request.sector * blk::kSectorSize;  // in range: sector <= capacity < 2^55

    switch (request.kind) {
        case blk::Kind::NoStatus:
            log_request(spdlog::level::warn,
                        fmt::format("request at head {}: {}; completed with used length 0", head, request.problem));
            complete(slot, blk::kStatusIoErr, 0);  // writes nothing: there is no writable byte
            return;
        case blk::Kind::Complete:
            log_request(request.status == blk::kStatusUnsupp ? spdlog::level::info : spdlog::level::warn,
                        fmt::format("request at head {} ({}, sector {}): {}; completed with {}", head,
                                    blk::type_name(request.type), request.sector, request.problem,
                                    status_name(request.status)));
            complete(slot, request.status, 0);
            return;
        case blk::Kind::GetId: {
            std::array<uint8_t, blk::kIdBytes> id{};  // NUL-padded; no NUL when 20 long
            std::copy_n(serial_.begin(), std::min<size_t>(serial_.size(), id.size()), id.begin());
            slot.chain.write(0, id);
            complete(slot, blk::kStatusOk, id.size());
            return;
        }
        case blk::Kind::Flush:
            if (image_.read_only()) {
                complete(slot, blk::kStatusOk, 0);  // nothing was ever written
                return;
            }
            slot.operations.push_back({.step = Operation::Step::Flush, .iov = {}});
            break;
        case blk::Kind::Read:
        case blk::Kind::Write: {
            if (request.data_length == 0) {
                complete(slot, blk::kStatusOk, 0);
                return;
            }
            Operation transfer{.step = Operation::Step::Transfer,
                               .kind = request.kind == blk::Kind::Read ? BlockIoOp::Kind::Read : BlockIoOp::Kind::Write,
                               .offset = offset,
                               .length = request.data_length,
                               .iov = {}};
            for (std::span<uint8_t> buffer : request.read_buffers) transfer.iov.push_back({buffer.data(), buffer.size()});
            // pwritev only reads through these pointers.
            for (std::span<const uint8_t> buffer : request.write_buffers)
                transfer.iov.push_back({const_cast<uint8_t*>(buffer.data()), buffer.size()});
            slot.operations.push_back(std::move(transfer));
            if (image_.direct() && (offset % image_.offset_alignment() != 0 ||
                                    request.data_length % image_.offset_alignment() != 0)) {
                log_request(spdlog::level::warn,
                            fmt::format("request at head {} ({}, sectors {}+{}): not aligned to the {}-byte blocks "
                                        "direct I/O needs on this host (blk_size says so); completed with IOERR",
                                        head, blk::type_name(request.type), request.sector,
                                        request.data_length / blk::kSectorSize, image_.offset_alignment()));
                complete(slot, blk::kStatusIoErr, 0);
                return;
            }
            if (needs_bounce(slot)) {
                slot.bounce_size = round_up(request.data_length, kPage);
                // Over budget: wait for earlier bounces, in order. A request
                // larger than the whole budget runs when it is alone.
                if (!deferred_.empty() || (bounce_in_use_ > 0 && bounce_in_use_ + slot.bounce_size > kBounceBudget)) {
                    deferred_.push_back(head);
                    return;
                }
            }
            break;
        }
        case blk::Kind::Discard:
        case blk::Kind::WriteZeroes:
            for (const blk::Segment& segment : request.segments) {
                if (segment.sectors == 0) continue;
                Operation::Step step = request.kind == blk::Kind::Discard ? Operation::Step::Discard
                                       : segment.unmap                    ? Operation::Step::PunchZeroes
                                                                          : Operation::Step::ZeroRange;
                slot.operations.push_back({.step = step,
                                           .offset = segment.sector * blk::kSectorSize,
                                           .length = uint64_t{segment.sectors} * blk::kSectorSize,
                                           .iov = {}});
            }
            if (slot.operations.empty()) {
                complete(slot, blk::kStatusOk, 0);
                return;
            }
            break;
    }
    launch(head);
}

bool VirtioBlk::needs_bounce(const Slot& slot) const {
    if (!image_.direct()) return false;
    const uint64_t memory_mask = image_.memory_alignment() - 1;
    const uint64_t length_mask = image_.offset_alignment() - 1;
    for (const iovec& piece : slot.operations.front().iov)
        if ((reinterpret_cast<uintptr_t>(piece.iov_base) & memory_mask) != 0 || (piece.iov_len & length_mask) != 0)
            return true;
    return false;
}

void VirtioBlk::launch(uint16_t head) {
    Slot& slot = slots_[head];
    if (slot.bounce_size != 0) {
        Operation& transfer = slot.operations.front();
        const size_t alignment = std::max<size_t>(image_.memory_alignment(), kPage);
        slot.bounce = static_cast<uint8_t*>(std::aligned_alloc(alignment, slot.bounce_size));
        if (slot.bounce == nullptr) {
            log_request(spdlog::level::err,
                        fmt::format("request at head {}: no memory for a {}-byte bounce buffer; completed with IOERR",
                                    head, slot.bounce_size));
            slot.bounce_size = 0;
            complete(slot, blk::kStatusIoErr, 0);
            return;
        }
        bounce_in_use_ += slot.bounce_size;
        ++stats_.bounced;
        if (transfer.kind == BlockIoOp::Kind::Write) {
            uint64_t at = 0;
            for (std::span<const uint8_t> buffer : slot.request.write_buffers) {
                std::memcpy(slot.bounce + at, buffer.data(), buffer.size());
                at += buffer.size();
            }
        }
        transfer.iov.assign(1, iovec{slot.bounce, transfer.length});
    }
    slot.pending = static_cast<unsigned>(slot.operations.size());
    for (unsigned i = 0; i < slot.operations.size(); ++i) queue_operation(head, i);
}

void VirtioBlk::queue_operation(uint16_t head, unsigned index) {
    Operation& operation = slots_[head].operations[index];
    BlockIoOp op;
    op.tag = (uint64_t{head} << 32) | index;
    switch (operation.step) {
        case Operation::Step::Transfer:
        case Operation::Step::WriteZeroes:
            op.kind = operation.step == Operation::Step::WriteZeroes ? BlockIoOp::Kind::Write : operation.kind;
            if (operation.step == Operation::Step::WriteZeroes)
                operation.iov.assign(1, iovec{zeros_, std::min<uint64_t>(operation.length - operation.done, kSizeMax)});
            op.offset = operation.offset + operation.done;
            op.iov = operation.iov.data();
            op.iov_count = static_cast<unsigned>(operation.iov.size());
            break;
        case Operation::Step::Flush:
            op.kind = BlockIoOp::Kind::Sync;
            op.barrier = true;
            break;
        case Operation::Step::Discard:
        case Operation::Step::PunchZeroes:
        case Operation::Step::ZeroRange:
            op.kind = BlockIoOp::Kind::Fallocate;
            op.fallocate_mode = (operation.step == Operation::Step::ZeroRange ? FALLOC_FL_ZERO_RANGE
                                                                              : FALLOC_FL_PUNCH_HOLE) |
                                FALLOC_FL_KEEP_SIZE;
            op.offset = operation.offset;
            op.length = operation.length;
            break;
    }
    io_->queue(op);
}

void VirtioBlk::on_completion(const BlockIoCompletion& completion) {
    const auto head = static_cast<uint32_t>(completion.tag >> 32);
    const auto index = static_cast<uint32_t>(completion.tag);
    if (head >= slots_.size() || !slots_[head].busy || index >= slots_[head].operations.size()) {
        spdlog::error("{}: device bug: completion for head {} operation {}, which is not in flight", name_, head, index);
        return;
    }
    Slot& slot = slots_[head];
    Operation& operation = slot.operations[index];
    const int64_t result = completion.result;
    int error = result < 0 ? static_cast<int>(-result) : 0;
    bool again = false;  // queue the operation once more (it goes on, or tries another way)

    switch (operation.step) {
        case Operation::Step::Transfer:
        case Operation::Step::WriteZeroes:
            if (result > 0) {
                operation.done += static_cast<uint64_t>(result);
                if (operation.step == Operation::Step::Transfer) advance(operation.iov, static_cast<uint64_t>(result));
                again = operation.done < operation.length;
            } else if (result == 0) {
                error = EIO;  // the image ended early: someone truncated it under us
            } else if (error == EAGAIN || error == EINTR) {
                error = 0;
                again = true;
            }
            break;
        case Operation::Step::Flush: break;
        case Operation::Step::Discard:
            if (error == EOPNOTSUPP) error = 0;  // discard is a hint: nothing deallocated is fine
            break;
        case Operation::Step::PunchZeroes:
        case Operation::Step::ZeroRange:
            if (error == EOPNOTSUPP) {
                // The host cannot do it this way: zero the range, else write zeros.
                error = 0;
                again = true;
                if (operation.step == Operation::Step::PunchZeroes) {
                    operation.step = Operation::Step::ZeroRange;
                } else {
                    operation.step = Operation::Step::WriteZeroes;
                    if (zeros_ == nullptr) {
                        zeros_ = static_cast<uint8_t*>(std::aligned_alloc(kPage, kSizeMax));
                        if (zeros_ == nullptr) {
                            error = ENOMEM;
                            again = false;
                        } else {
                            std::memset(zeros_, 0, kSizeMax);
                        }
                    }
                }
            }
            break;
    }
    if (again && error == 0) {
        queue_operation(static_cast<uint16_t>(head), index);
        return;
    }
    if (error != 0) {
        slot.status = blk::kStatusIoErr;
        if (slot.error == 0) slot.error = error;
    }
    if (--slot.pending == 0) finish(static_cast<uint16_t>(head));
}

void VirtioBlk::finish(uint16_t head) {
    Slot& slot = slots_[head];
    uint64_t produced = 0;
    if (slot.status == blk::kStatusOk && slot.request.kind == blk::Kind::Read) {
        if (slot.bounce != nullptr) {
            uint64_t at = 0;
            for (std::span<uint8_t> buffer : slot.request.read_buffers) {
                std::memcpy(buffer.data(), slot.bounce + at, buffer.size());
                at += buffer.size();
            }
        }
        produced = slot.request.data_length;
    }
    if (slot.status != blk::kStatusOk)
        log_request(spdlog::level::err,
                    fmt::format("{} at sector {} failed on the host: {}; completed with IOERR",
                                blk::type_name(slot.request.type), slot.request.sector, std::strerror(slot.error)));
    complete(slot, slot.status, produced);
}

void VirtioBlk::complete(Slot& slot, uint8_t status, uint64_t produced) {
    const uint16_t head = slot.chain.head;
    const uint32_t used = blk::finish_request(slot.chain, status, produced);
    ++stats_.completed;
    if (status == blk::kStatusIoErr) ++stats_.errors;
    if (status == blk::kStatusUnsupp) ++stats_.unsupported;
    if (!queues_.empty()) queues_[kRequestQueue].push(head, used);
    completed_since_interrupt_ = true;
    release(slot);
}

void VirtioBlk::release(Slot& slot) {
    if (slot.bounce != nullptr) {
        std::free(slot.bounce);
        bounce_in_use_ -= slot.bounce_size;
    }
    if (slot.busy) --busy_;
    slot = Slot{};
}

void VirtioBlk::interrupt_if_needed() {
    if (!completed_since_interrupt_ || queues_.empty()) return;
    completed_since_interrupt_ = false;
    if (queues_[kRequestQueue].needs_interrupt()) signals_->signal_used_buffer();
}

void VirtioBlk::process_completions(bool wait) {
    std::vector<BlockIoCompletion> batch;
    io_->reap(batch, wait);
    for (const BlockIoCompletion& completion : batch) on_completion(completion);
    start_deferred();
    io_->submit();  // continuations and fallbacks queued above
    interrupt_if_needed();
}

void VirtioBlk::start_deferred() {
    while (!deferred_.empty()) {
        const uint16_t head = deferred_.front();
        if (bounce_in_use_ > 0 && bounce_in_use_ + slots_[head].bounce_size > kBounceBudget) return;
        deferred_.pop_front();
        launch(head);
    }
}

void VirtioBlk::drain() {
    // What has not started is cancelled; what runs may still write into
    // guest memory, so wait for it. Results are dropped: after a reset the
    // driver expects nothing back.
    io_->cancel_unstarted();
    std::vector<BlockIoCompletion> ignored;
    while (io_->in_flight() > 0) {
        io_->reap(ignored, true);
        ignored.clear();
    }
    for (Slot& slot : slots_) release(slot);
    deferred_.clear();
    completed_since_interrupt_ = false;
}

void VirtioBlk::log_request(spdlog::level::level_enum level, const std::string& text) {
    request_log_.log(level, fmt::format("{}: {}", name_, text));
}

}  // namespace minikvm
