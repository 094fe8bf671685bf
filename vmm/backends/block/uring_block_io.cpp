#include "vmm/backends/block/uring_block_io.h"

#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include <spdlog/spdlog.h>

namespace minikvm {

namespace {

constexpr unsigned kCompletionsPerEntry = 16;

[[noreturn]] void throw_errno(int error, const char* what) {
    throw std::system_error(error, std::generic_category(), what);
}

}  // namespace

UringBlockIo::UringBlockIo(int fd, unsigned depth)
    : fd_(fd), eventfd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!eventfd_) throw_errno(errno, "eventfd");
    io_uring_params params{};
    params.flags = IORING_SETUP_CQSIZE;
    params.cq_entries = std::min<unsigned>(depth * kCompletionsPerEntry, 65536);
    if (int error = io_uring_queue_init_params(depth, &ring_, &params); error < 0)
        throw_errno(-error, "io_uring_queue_init");
    if (int error = io_uring_register_eventfd(&ring_, eventfd_.get()); error < 0) {
        io_uring_queue_exit(&ring_);
        throw_errno(-error, "io_uring_register_eventfd");
    }
}

UringBlockIo::~UringBlockIo() {
    // The kernel may still be writing into the buffers of operations in
    // flight: they must be finished before the ring (and the caller's
    // memory) goes away.
    std::vector<BlockIoCompletion> ignored;
    while (in_flight_ > 0) {
        reap(ignored, true);
        ignored.clear();
    }
    io_uring_unregister_eventfd(&ring_);
    io_uring_queue_exit(&ring_);
}

io_uring_sqe* UringBlockIo::get_sqe() {
    for (;;) {
        if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) return sqe;
        // The submission ring is full: hand it to the kernel. If the kernel
        // cannot take it (a full completion ring), make room by collecting.
        int submitted = io_uring_submit(&ring_);
        if (submitted == -EINTR) continue;
        if (submitted >= 0 && io_uring_sq_space_left(&ring_) > 0) continue;
        if (submitted < 0 && submitted != -EBUSY && submitted != -EAGAIN)
            throw_errno(-submitted, "io_uring_submit");
        io_uring_cqe* cqe = nullptr;
        int error = io_uring_wait_cqe(&ring_, &cqe);
        if (error < 0 && error != -EINTR) throw_errno(-error, "io_uring_wait_cqe");
        collect(stash_);
    }
}

void UringBlockIo::queue(const BlockIoOp& op) {
    io_uring_sqe* sqe = get_sqe();
    switch (op.kind) {
        case BlockIoOp::Kind::Read: io_uring_prep_readv(sqe, fd_, op.iov, op.iov_count, op.offset); break;
        case BlockIoOp::Kind::Write: io_uring_prep_writev(sqe, fd_, op.iov, op.iov_count, op.offset); break;
        case BlockIoOp::Kind::Sync:
            io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
            // Drain: starts after everything submitted earlier completed,
            // and holds back everything submitted later.
            if (op.barrier) sqe->flags |= IOSQE_IO_DRAIN;
            break;
        case BlockIoOp::Kind::Fallocate:
            io_uring_prep_fallocate(sqe, fd_, op.fallocate_mode, op.offset, op.length);
            break;
    }
    io_uring_sqe_set_data64(sqe, op.tag);
    ++in_flight_;
}

void UringBlockIo::submit() {
    for (;;) {
        int submitted = io_uring_submit(&ring_);
        if (submitted >= 0 || submitted == -EBUSY || submitted == -EAGAIN) return;  // retried at the next call
        if (submitted != -EINTR) throw_errno(-submitted, "io_uring_submit");
    }
}

size_t UringBlockIo::collect(std::vector<BlockIoCompletion>& out) {
    size_t count = 0;
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
        out.push_back({io_uring_cqe_get_data64(cqe), cqe->res});
        io_uring_cqe_seen(&ring_, cqe);
        --in_flight_;
        ++count;
    }
    return count;
}

bool UringBlockIo::completions_ready() const {
    // The completion ring's head and tail, in shared memory.
    return !stash_.empty() || io_uring_cq_ready(&ring_) > 0;
}

void UringBlockIo::set_completion_signal(bool on) {
    // -EOPNOTSUPP before Linux 5.8: the eventfd keeps being signalled, which
    // costs a wake-up and is otherwise harmless.
    [[maybe_unused]] int error = io_uring_cq_eventfd_toggle(&ring_, on);
}

void UringBlockIo::reap(std::vector<BlockIoCompletion>& out, bool wait) {
    const size_t stashed = stash_.size();
    out.insert(out.end(), stash_.begin(), stash_.end());
    stash_.clear();
    if (collect(out) > 0 || stashed > 0 || !wait) return;
    while (in_flight_ > 0) {
        // Whatever is still in the submission ring must reach the kernel
        // before waiting for it makes sense.
        int error = io_uring_submit_and_wait(&ring_, 1);
        if (error < 0 && error != -EINTR && error != -EBUSY && error != -EAGAIN)
            throw_errno(-error, "io_uring_submit_and_wait");
        if (collect(out) > 0) return;
    }
}

}  // namespace minikvm
