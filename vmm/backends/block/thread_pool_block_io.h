#pragma once
// BlockIo on a few worker threads doing plain preadv/pwritev/fdatasync/
// fallocate: the fallback for hosts without io_uring (and aio=threads).
// Operations start in queue order; a barrier Sync waits until everything
// before it has finished and holds back everything after it. Workers post
// results to a list and signal an eventfd.
//
// Workers inherit the signal mask of the thread that creates the pool (the
// machine blocks its stop signals before creating any thread).

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "vmm/backends/block/block_io.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class ThreadPoolBlockIo : public BlockIo {
public:
    static constexpr unsigned kDefaultThreads = 4;

    // Throws std::system_error if the eventfd or a thread cannot be made.
    ThreadPoolBlockIo(int fd, unsigned threads = kDefaultThreads);
    // Cancels what has not started, waits for what runs, joins the workers.
    ~ThreadPoolBlockIo() override;
    ThreadPoolBlockIo(const ThreadPoolBlockIo&) = delete;
    ThreadPoolBlockIo& operator=(const ThreadPoolBlockIo&) = delete;

    const char* name() const override { return "thread pool"; }
    void queue(const BlockIoOp& op) override;
    void submit() override;
    int completion_fd() const override { return eventfd_.get(); }
    void reap(std::vector<BlockIoCompletion>& out, bool wait) override;
    bool completions_ready() const override;
    void set_completion_signal(bool on) override;
    size_t in_flight() const override;
    void cancel_unstarted() override;

private:
    void work();
    int64_t run(const BlockIoOp& op) const;
    void signal_completion();

    const int fd_;
    UniqueFd eventfd_;
    std::vector<BlockIoOp> staged_;  // queued, not yet submitted (owner only)

    mutable std::mutex mutex_;
    std::condition_variable work_ready_;  // workers wait for pending work
    std::condition_variable done_;        // reap(wait) waits for completions
    std::deque<BlockIoOp> pending_;
    std::vector<BlockIoCompletion> completed_;
    size_t running_ = 0;
    bool barrier_running_ = false;
    size_t in_flight_ = 0;  // submitted, not reaped
    bool stopping_ = false;
    bool signal_ = true;  // set_completion_signal()
    std::vector<std::thread> workers_;  // last: they use everything above
};

}  // namespace minikvm
