#pragma once
// Asynchronous I/O on one open file, for a disk device: operations are
// queued, started in batches (one system call per batch where the engine
// allows), and finish in any order; the owner hears about finished ones
// through completion_fd() on its event loop and collects them with reap().
//
// Two engines: io_uring (UringBlockIo), and a thread pool (ThreadPoolBlockIo)
// for hosts where io_uring cannot be set up. make_block_io() picks one.
//
// One operation is one system call's worth: a read or write may transfer
// fewer bytes than asked (the owner continues it), and errors come back as
// -errno. The engines never interpret the data and never retry.
//
// Threads: not thread-safe. The owner serializes every call (its device
// lock); the engine's own threads, if any, never call back.

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vmm/backends/block/disk_config.h"

namespace minikvm {

struct BlockIoOp {
    enum class Kind : uint8_t {
        Read,       // preadv(iov, offset)
        Write,      // pwritev(iov, offset)
        Sync,       // fdatasync
        Fallocate,  // fallocate(mode, offset, length)
    };
    Kind kind = Kind::Read;
    // Sync only: start after every operation queued before it has finished,
    // and start nothing queued after it until it has (a full barrier).
    bool barrier = false;
    int fallocate_mode = 0;
    uint64_t offset = 0;
    uint64_t length = 0;  // Fallocate
    // Read and Write: the buffers; they and the array must stay valid until
    // the operation's completion has been reaped.
    const iovec* iov = nullptr;
    unsigned iov_count = 0;
    uint64_t tag = 0;  // handed back in the completion
};

struct BlockIoCompletion {
    uint64_t tag = 0;
    int64_t result = 0;  // bytes transferred, 0, or -errno
};

class BlockIo {
public:
    virtual ~BlockIo() = default;

    virtual const char* name() const = 0;
    // Queues one operation. It starts at the next submit() at the latest.
    virtual void queue(const BlockIoOp& op) = 0;
    // Starts everything queued.
    virtual void submit() = 0;
    // Readable (an eventfd) when completions may be ready; drain it before reap().
    virtual int completion_fd() const = 0;
    // Appends finished operations to `out`. With `wait`, blocks until at
    // least one is there, unless nothing is in flight.
    virtual void reap(std::vector<BlockIoCompletion>& out, bool wait) = 0;
    // Whether reap() would find something now, found without a system call:
    // a poller's cheap look (completion_fd() costs a read() to drain).
    virtual bool completions_ready() const = 0;
    // Whether finished operations signal completion_fd() (on at start). A
    // poller that looks with completions_ready() anyway turns it off to
    // spare the engine a wake-up per operation; after turning it back on,
    // it must look once more: what finished in between signalled nothing.
    virtual void set_completion_signal(bool on) = 0;
    // Operations queued and not yet reaped.
    virtual size_t in_flight() const = 0;
    // Operations that have not started are completed with -ECANCELED
    // (best effort: what already runs finishes normally).
    virtual void cancel_unstarted() = 0;
};

// An engine for `fd` that can keep `depth` operations in flight. With
// DiskAio::IoUring tries io_uring first; if the host refuses it, sets
// `fallback_reason` and returns the thread pool. Throws std::system_error
// when neither can be set up.
std::unique_ptr<BlockIo> make_block_io(int fd, DiskAio preferred, unsigned depth, std::string& fallback_reason);

}  // namespace minikvm
