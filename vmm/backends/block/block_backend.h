#pragma once
// Everything a disk device needs done with its image file, one request at a
// time: the device hands in a read, write, flush, discard or write-zeroes
// with guest buffers as iovecs and a cookie, and gets back one completion
// per request (the cookie and 0 or an errno). In between, all file logic
// lives here:
//   - read/write: one preadv/pwritev; a short transfer goes on where it
//     stopped (a read that hits the end of the file fails with EIO: someone
//     truncated the image);
//   - O_DIRECT (cache=none): buffers not aligned as the host wants go
//     through a bounce buffer; bounce memory in flight is bounded
//     (kBounceBudget), requests over it wait for earlier ones, in order;
//   - flush: fdatasync as a full barrier (it starts once everything started
//     before it has finished, and nothing after it starts before it is done);
//   - discard: punch a hole; EOPNOTSUPP is success (a discard is a hint);
//   - write zeroes: punch a hole when unmapping is allowed, else zero the
//     range, else write zeros: each step falls back to the next on EOPNOTSUPP.
// Operations go to a BlockIo engine (io_uring or a thread pool) in batches:
// one submission per kick().
//
// Threads: not thread-safe; the owning device serializes every call (its
// lock). completion_fd() becomes readable when reap() may have something;
// the owner empties it (acknowledge_completion_fd()) when it was.

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "vmm/backends/block/block_io.h"
#include "vmm/backends/block/disk_config.h"
#include "vmm/backends/block/disk_image.h"

namespace minikvm {

struct BlockRequest {
    enum class Kind : uint8_t { Read, Write, Flush, Discard, WriteZeroes };
    struct Range {
        uint64_t offset = 0;
        uint64_t length = 0;
        bool unmap = false;  // WriteZeroes: a hole is fine
    };
    Kind kind = Kind::Read;
    uint64_t cookie = 0;  // handed back in the completion
    // Read and Write: the file offset and the buffers (guest memory, which
    // must stay valid until the completion has been reaped). Write only
    // reads through the pointers.
    uint64_t offset = 0;
    std::vector<iovec> buffers;
    // Discard and WriteZeroes: the byte ranges, each non-empty.
    std::vector<Range> ranges;
};

struct BlockCompletion {
    uint64_t cookie = 0;
    int error = 0;  // 0, or the first errno the host gave
};

class BlockBackend {
public:
    // Bounce memory in flight at most (a request needing more runs alone).
    static constexpr uint64_t kBounceBudget = 64u << 20;
    // Zeros written per operation when the host can neither punch nor zero.
    static constexpr uint64_t kZeroChunk = 1u << 20;

    // Up to `depth` requests in flight. With DiskAio::IoUring tries io_uring
    // first and sets `fallback_reason` when the host refuses it. Throws
    // std::system_error when no engine can be set up.
    BlockBackend(DiskImage image, DiskAio aio, unsigned depth, std::string& fallback_reason);
    // Waits for everything in flight; writes the guest never flushed still
    // reach the disk (fdatasync, as QEMU does on close).
    ~BlockBackend();
    BlockBackend(const BlockBackend&) = delete;
    BlockBackend& operator=(const BlockBackend&) = delete;

    const DiskImage& image() const { return image_; }
    const char* engine_name() const { return io_->name(); }
    int completion_fd() const { return io_->completion_fd(); }
    // Empties completion_fd(): its readiness is level-triggered, so the
    // owner's handler takes it before reaping. reap() does not read it, so a
    // poller reaps without a system call.
    void acknowledge_completion_fd();
    // Whether finished operations make completion_fd() readable (on at
    // start): a poller turns it off while it polls, and after turning it on
    // looks once more with completions_ready().
    void set_completion_signal(bool on) { io_->set_completion_signal(on); }
    // Whether a transfer at `offset` of `length` bytes suits the image (with
    // O_DIRECT both must be multiples of its offset alignment).
    bool aligned(uint64_t offset, uint64_t length) const;

    // Queues a request; it starts at the next kick(). A request that cannot
    // start (no memory for its bounce buffer) completes at the next reap().
    // At most `depth` may be in flight: more is a device bug (std::logic_error).
    void submit(BlockRequest request);
    // Starts everything queued: one batch.
    void kick();
    // Appends finished requests to `out`, continuing short transfers and
    // fallbacks (started by the next kick(), which reap() does itself). With
    // `wait`, blocks until at least one operation finishes, unless nothing
    // is in flight.
    void reap(std::vector<BlockCompletion>& out, bool wait);
    // Whether reap() has something now, looked at without a system call
    // (what a poller asks on every pass).
    bool completions_ready() const { return !failed_to_start_.empty() || io_->completions_ready(); }
    // Requests submitted and not yet reaped.
    size_t in_flight() const { return busy_; }
    // Drops every request: what has not started is cancelled, what runs is
    // waited for (it may still write into guest memory). No completion comes
    // back for any of them.
    void cancel_all();

    // Requests that went through a bounce buffer.
    uint64_t bounced() const { return bounced_; }

private:
    struct Operation {
        enum class Step : uint8_t { Transfer, Flush, Discard, PunchZeroes, ZeroRange, WriteZeroes };
        Step step = Step::Transfer;
        BlockIoOp::Kind kind = BlockIoOp::Kind::Read;
        uint64_t offset = 0;
        uint64_t length = 0;
        uint64_t done = 0;       // bytes transferred so far (Transfer, WriteZeroes)
        std::vector<iovec> iov;  // what is left to transfer; stable while in flight
    };
    struct Slot {
        bool busy = false;
        BlockRequest request;
        uint64_t length = 0;  // Read, Write: bytes in the buffers
        std::vector<Operation> operations;
        unsigned pending = 0;  // operations not finished
        int error = 0;
        uint8_t* bounce = nullptr;
        uint64_t bounce_size = 0;
    };

    bool needs_bounce(const Slot& slot) const;
    void launch(uint32_t index);
    // Completes a request that never reached the engine, at the next reap().
    void complete_later(Slot& slot, int error);
    void queue_operation(uint32_t index, unsigned operation);
    void on_operation_done(const BlockIoCompletion& completion, std::vector<BlockCompletion>& out);
    void finish(uint32_t index, std::vector<BlockCompletion>& out);
    void release(Slot& slot);
    void start_deferred();

    const DiskImage image_;
    std::unique_ptr<BlockIo> io_;
    std::vector<Slot> slots_;
    std::vector<uint32_t> free_;   // slot indices not in use
    unsigned busy_ = 0;
    std::deque<uint32_t> deferred_;  // waiting for bounce budget, in order
    std::vector<BlockCompletion> failed_to_start_;  // complete_later(): reported at the next reap()
    std::vector<BlockIoCompletion> reaped_;  // reap()'s batch from the engine, kept for its capacity
    uint64_t bounce_in_use_ = 0;
    uint64_t bounced_ = 0;
    uint8_t* zeros_ = nullptr;  // kZeroChunk zero bytes, aligned for O_DIRECT
};

}  // namespace minikvm
