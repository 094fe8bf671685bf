#pragma once
// BlockIo on io_uring (liburing): queue() fills submission entries, submit()
// hands the whole batch to the kernel in one io_uring_enter, and the kernel
// signals an eventfd registered with the ring (io_uring_register_eventfd)
// for every completion, which is what the owner's event loop watches.
// Sync with a barrier is IORING_OP_FSYNC with IORING_FSYNC_DATASYNC and
// IOSQE_IO_DRAIN.
//
// The completion queue holds `depth` x 16 entries, so an owner that keeps at
// most that many operations in flight never overflows it (and kernels since
// 5.5 keep overflowed completions anyway, IORING_FEAT_NODROP).

#include <liburing.h>

#include <vector>

#include "vmm/backends/block/block_io.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class UringBlockIo : public BlockIo {
public:
    // Throws std::system_error when the host refuses io_uring (too old a
    // kernel, kernel.io_uring_disabled, a seccomp filter...).
    UringBlockIo(int fd, unsigned depth);
    // Waits for every operation in flight, then tears the ring down.
    ~UringBlockIo() override;
    UringBlockIo(const UringBlockIo&) = delete;
    UringBlockIo& operator=(const UringBlockIo&) = delete;

    const char* name() const override { return "io_uring"; }
    void queue(const BlockIoOp& op) override;
    void submit() override;
    int completion_fd() const override { return eventfd_.get(); }
    void reap(std::vector<BlockIoCompletion>& out, bool wait) override;
    bool completions_ready() const override;
    // IORING_CQ_EVENTFD_DISABLED (Linux 5.8+; older kernels keep signalling).
    void set_completion_signal(bool on) override;
    size_t in_flight() const override { return in_flight_; }
    void cancel_unstarted() override {}  // the kernel runs what it was given

private:
    // Moves ready completions into `out`; returns how many.
    size_t collect(std::vector<BlockIoCompletion>& out);
    io_uring_sqe* get_sqe();

    const int fd_;
    UniqueFd eventfd_;
    io_uring ring_{};
    size_t in_flight_ = 0;
    // Completions collected while making room in a full ring; reap() hands
    // them out first.
    std::vector<BlockIoCompletion> stash_;
};

}  // namespace minikvm
