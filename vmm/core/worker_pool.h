#pragma once
// A few threads that run jobs in the order they were posted: for work that
// may block on the host (file system calls) and must not hold up the event
// loop or a vCPU. Jobs start in FIFO order; with several threads they may
// finish in any order.
//
// Threads inherit the signal mask of the thread that creates the pool (the
// machine blocks its stop signals before creating any thread).

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace minikvm {

class WorkerPool {
public:
    // Throws std::system_error when a thread cannot be started.
    explicit WorkerPool(unsigned threads);
    // Runs what was posted, then joins the threads.
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    void post(std::function<void()> job);
    // Blocks until every job posted so far has finished.
    void wait_idle();
    unsigned threads() const { return static_cast<unsigned>(threads_.size()); }

private:
    void work();

    std::mutex mutex_;
    std::condition_variable work_ready_;
    std::condition_variable idle_;
    std::deque<std::function<void()>> jobs_;
    size_t running_ = 0;
    bool stopping_ = false;
    std::vector<std::thread> threads_;  // last: they use everything above
};

}  // namespace minikvm
