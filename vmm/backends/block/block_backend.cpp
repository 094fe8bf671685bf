#include "vmm/backends/block/block_backend.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <spdlog/spdlog.h>

namespace minikvm {

namespace {

constexpr uint64_t kPage = 4096;

uint64_t round_up(uint64_t value, uint64_t to) { return (value + to - 1) / to * to; }

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

}  // namespace

BlockBackend::BlockBackend(DiskImage image, DiskAio aio, unsigned depth, std::string& fallback_reason)
    : image_(std::move(image)), slots_(depth) {
    // Each request is one operation at a time, but for discard and
    // write-zeroes ranges: the engine gets room for all of them.
    io_ = make_block_io(image_.fd(), aio, depth, fallback_reason);
    free_.reserve(depth);
    for (uint32_t i = depth; i > 0; --i) free_.push_back(i - 1);
}

BlockBackend::~BlockBackend() {
    cancel_all();
    if (!image_.read_only() && ::fdatasync(image_.fd()) != 0)
        spdlog::warn("fdatasync of '{}' at exit: {}", image_.path(), std::strerror(errno));
    std::free(zeros_);
}

bool BlockBackend::aligned(uint64_t offset, uint64_t length) const {
    return !image_.direct() || (offset % image_.offset_alignment() == 0 && length % image_.offset_alignment() == 0);
}

void BlockBackend::submit(BlockRequest request) {
    if (free_.empty()) throw std::logic_error("block backend: more requests than its depth");
    const uint32_t index = free_.back();
    free_.pop_back();
    ++busy_;
    Slot& slot = slots_[index];
    slot.busy = true;
    slot.request = std::move(request);
    const BlockRequest& r = slot.request;
    switch (r.kind) {
        case BlockRequest::Kind::Read:
        case BlockRequest::Kind::Write: {
            Operation transfer{.step = Operation::Step::Transfer,
                               .kind = r.kind == BlockRequest::Kind::Read ? BlockIoOp::Kind::Read
                                                                          : BlockIoOp::Kind::Write,
                               .offset = r.offset,
                               .iov = r.buffers};
            for (const iovec& buffer : r.buffers) slot.length += buffer.iov_len;
            transfer.length = slot.length;
            slot.operations.push_back(std::move(transfer));
            if (needs_bounce(slot)) {
                slot.bounce_size = round_up(slot.length, kPage);
                // Over budget: wait for earlier bounces, in order. A request
                // larger than the whole budget runs when it is alone.
                if (!deferred_.empty() || (bounce_in_use_ > 0 && bounce_in_use_ + slot.bounce_size > kBounceBudget)) {
                    deferred_.push_back(index);
                    return;
                }
            }
            break;
        }
        case BlockRequest::Kind::Flush:
            slot.operations.push_back({.step = Operation::Step::Flush, .iov = {}});
            break;
        case BlockRequest::Kind::Discard:
        case BlockRequest::Kind::WriteZeroes:
            for (const BlockRequest::Range& range : r.ranges) {
                const Operation::Step step = r.kind == BlockRequest::Kind::Discard ? Operation::Step::Discard
                                             : range.unmap                         ? Operation::Step::PunchZeroes
                                                                                   : Operation::Step::ZeroRange;
                slot.operations.push_back({.step = step, .offset = range.offset, .length = range.length, .iov = {}});
            }
            break;
    }
    launch(index);
}

bool BlockBackend::needs_bounce(const Slot& slot) const {
    if (!image_.direct()) return false;
    const uint64_t memory_mask = image_.memory_alignment() - 1;
    const uint64_t length_mask = image_.offset_alignment() - 1;
    for (const iovec& piece : slot.operations.front().iov)
        if ((reinterpret_cast<uintptr_t>(piece.iov_base) & memory_mask) != 0 || (piece.iov_len & length_mask) != 0)
            return true;
    return false;
}

void BlockBackend::launch(uint32_t index) {
    Slot& slot = slots_[index];
    if (slot.operations.empty()) {
        complete_later(slot, 0);  // nothing to do: done
        return;
    }
    if (slot.bounce_size != 0) {
        Operation& transfer = slot.operations.front();
        const size_t alignment = std::max<size_t>(image_.memory_alignment(), kPage);
        slot.bounce = static_cast<uint8_t*>(std::aligned_alloc(alignment, slot.bounce_size));
        if (slot.bounce == nullptr) {
            slot.bounce_size = 0;
            complete_later(slot, ENOMEM);
            return;
        }
        bounce_in_use_ += slot.bounce_size;
        ++bounced_;
        if (transfer.kind == BlockIoOp::Kind::Write) {
            uint64_t at = 0;
            for (const iovec& buffer : slot.request.buffers) {
                std::memcpy(slot.bounce + at, buffer.iov_base, buffer.iov_len);
                at += buffer.iov_len;
            }
        }
        transfer.iov.assign(1, iovec{slot.bounce, transfer.length});
    }
    slot.pending = static_cast<unsigned>(slot.operations.size());
    for (unsigned i = 0; i < slot.operations.size(); ++i) queue_operation(index, i);
}

void BlockBackend::complete_later(Slot& slot, int error) {
    failed_to_start_.push_back({slot.request.cookie, error});
    release(slot);
    // The owner reaps when the completion fd is readable: make it so.
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(io_->completion_fd(), &one, sizeof one);
}

void BlockBackend::queue_operation(uint32_t index, unsigned operation_index) {
    Operation& operation = slots_[index].operations[operation_index];
    BlockIoOp op;
    op.tag = (uint64_t{index} << 32) | operation_index;
    switch (operation.step) {
        case Operation::Step::Transfer:
        case Operation::Step::WriteZeroes:
            op.kind = operation.step == Operation::Step::WriteZeroes ? BlockIoOp::Kind::Write : operation.kind;
            if (operation.step == Operation::Step::WriteZeroes)
                operation.iov.assign(1, iovec{zeros_, std::min(operation.length - operation.done, kZeroChunk)});
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

void BlockBackend::kick() { io_->submit(); }

void BlockBackend::acknowledge_completion_fd() {
    uint64_t count = 0;
    // Empties the engine's counter; EAGAIN means nothing new was signalled.
    [[maybe_unused]] ssize_t n = ::read(io_->completion_fd(), &count, sizeof count);
}

void BlockBackend::reap(std::vector<BlockCompletion>& out, bool wait) {
    out.insert(out.end(), failed_to_start_.begin(), failed_to_start_.end());
    const bool had_failures = !failed_to_start_.empty();
    failed_to_start_.clear();
    reaped_.clear();
    io_->reap(reaped_, wait && !had_failures);
    for (const BlockIoCompletion& completion : reaped_) on_operation_done(completion, out);
    start_deferred();
    out.insert(out.end(), failed_to_start_.begin(), failed_to_start_.end());
    failed_to_start_.clear();
    io_->submit();  // continuations and fallbacks queued above
}

void BlockBackend::on_operation_done(const BlockIoCompletion& completion, std::vector<BlockCompletion>& out) {
    const auto index = static_cast<uint32_t>(completion.tag >> 32);
    const auto operation_index = static_cast<uint32_t>(completion.tag);
    if (index >= slots_.size() || !slots_[index].busy || operation_index >= slots_[index].operations.size()) {
        spdlog::error("block backend bug: completion for slot {} operation {}, which is not in flight", index,
                      operation_index);
        return;
    }
    Slot& slot = slots_[index];
    Operation& operation = slot.operations[operation_index];
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
                        zeros_ = static_cast<uint8_t*>(std::aligned_alloc(kPage, kZeroChunk));
                        if (zeros_ == nullptr) {
                            error = ENOMEM;
                            again = false;
                        } else {
                            std::memset(zeros_, 0, kZeroChunk);
                        }
                    }
                }
            }
            break;
    }
    if (again && error == 0) {
        queue_operation(index, operation_index);
        return;
    }
    if (error != 0 && slot.error == 0) slot.error = error;
    if (--slot.pending == 0) finish(index, out);
}

void BlockBackend::finish(uint32_t index, std::vector<BlockCompletion>& out) {
    Slot& slot = slots_[index];
    if (slot.error == 0 && slot.bounce != nullptr && slot.request.kind == BlockRequest::Kind::Read) {
        uint64_t at = 0;
        for (const iovec& buffer : slot.request.buffers) {
            std::memcpy(buffer.iov_base, slot.bounce + at, buffer.iov_len);
            at += buffer.iov_len;
        }
    }
    out.push_back({slot.request.cookie, slot.error});
    release(slot);
}

void BlockBackend::release(Slot& slot) {
    if (!slot.busy) return;
    if (slot.bounce != nullptr) {
        std::free(slot.bounce);
        bounce_in_use_ -= slot.bounce_size;
    }
    --busy_;
    free_.push_back(static_cast<uint32_t>(&slot - slots_.data()));
    slot = Slot{};
}

void BlockBackend::start_deferred() {
    while (!deferred_.empty()) {
        const uint32_t index = deferred_.front();
        if (bounce_in_use_ > 0 && bounce_in_use_ + slots_[index].bounce_size > kBounceBudget) return;
        deferred_.pop_front();
        launch(index);
    }
}

void BlockBackend::cancel_all() {
    io_->cancel_unstarted();
    std::vector<BlockIoCompletion> ignored;
    while (io_->in_flight() > 0) {
        io_->reap(ignored, true);
        ignored.clear();
    }
    for (Slot& slot : slots_) release(slot);
    deferred_.clear();
    failed_to_start_.clear();
    uint64_t count = 0;
    [[maybe_unused]] ssize_t n = ::read(io_->completion_fd(), &count, sizeof count);
}

}  // namespace minikvm
