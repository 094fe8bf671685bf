#include "vmm/backends/block/thread_pool_block_io.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <system_error>

namespace minikvm {

ThreadPoolBlockIo::ThreadPoolBlockIo(int fd, unsigned threads)
    : fd_(fd), eventfd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!eventfd_) throw std::system_error(errno, std::generic_category(), "eventfd");
    try {
        for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
    } catch (...) {
        {
            std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        work_ready_.notify_all();
        for (std::thread& worker : workers_) worker.join();
        throw;
    }
}

ThreadPoolBlockIo::~ThreadPoolBlockIo() {
    cancel_unstarted();
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    work_ready_.notify_all();
    for (std::thread& worker : workers_) worker.join();
}

void ThreadPoolBlockIo::queue(const BlockIoOp& op) { staged_.push_back(op); }

void ThreadPoolBlockIo::submit() {
    if (staged_.empty()) return;
    {
        std::lock_guard lock(mutex_);
        for (const BlockIoOp& op : staged_) pending_.push_back(op);
        in_flight_ += staged_.size();
    }
    staged_.clear();
    work_ready_.notify_all();
}

size_t ThreadPoolBlockIo::in_flight() const {
    std::lock_guard lock(mutex_);
    return in_flight_ + staged_.size();
}

void ThreadPoolBlockIo::cancel_unstarted() {
    bool cancelled = false;
    {
        std::lock_guard lock(mutex_);
        for (const BlockIoOp& op : staged_) completed_.push_back({op.tag, -ECANCELED});
        in_flight_ += staged_.size();
        cancelled = !staged_.empty() || !pending_.empty();
        for (const BlockIoOp& op : pending_) completed_.push_back({op.tag, -ECANCELED});
        pending_.clear();
    }
    staged_.clear();
    if (cancelled) {
        done_.notify_all();
        signal_completion();
    }
}

bool ThreadPoolBlockIo::completions_ready() const {
    std::lock_guard lock(mutex_);
    return !completed_.empty();
}

void ThreadPoolBlockIo::set_completion_signal(bool on) {
    // Under the lock the workers hold while they complete: an operation
    // finished before this either signalled or is in completed_ for the
    // owner's look after turning it on.
    std::lock_guard lock(mutex_);
    signal_ = on;
}

void ThreadPoolBlockIo::reap(std::vector<BlockIoCompletion>& out, bool wait) {
    std::unique_lock lock(mutex_);
    if (wait && completed_.empty() && in_flight_ > 0) {
        // Work queued but not submitted would never finish: start it.
        if (!staged_.empty()) {
            lock.unlock();
            submit();
            lock.lock();
        }
        done_.wait(lock, [this] { return !completed_.empty() || in_flight_ == 0; });
    }
    in_flight_ -= completed_.size();
    out.insert(out.end(), completed_.begin(), completed_.end());
    completed_.clear();
}

void ThreadPoolBlockIo::work() {
    std::unique_lock lock(mutex_);
    for (;;) {
        // Strict queue order; a barrier starts alone and holds back the rest.
        work_ready_.wait(lock, [this] {
            if (stopping_) return true;
            if (pending_.empty() || barrier_running_) return false;
            return !pending_.front().barrier || running_ == 0;
        });
        if (stopping_) return;  // the destructor cancelled whatever was pending
        BlockIoOp op = pending_.front();
        pending_.pop_front();
        ++running_;
        barrier_running_ = op.barrier;
        lock.unlock();
        const int64_t result = run(op);
        lock.lock();
        --running_;
        if (op.barrier) barrier_running_ = false;
        completed_.push_back({op.tag, result});
        // Others may wait for this one to finish (a barrier) or for results.
        work_ready_.notify_all();
        done_.notify_all();
        if (signal_) signal_completion();
    }
}

int64_t ThreadPoolBlockIo::run(const BlockIoOp& op) const {
    for (;;) {
        int64_t result = 0;
        switch (op.kind) {
            case BlockIoOp::Kind::Read:
                result = ::preadv(fd_, op.iov, static_cast<int>(op.iov_count), static_cast<off_t>(op.offset));
                break;
            case BlockIoOp::Kind::Write:
                result = ::pwritev(fd_, op.iov, static_cast<int>(op.iov_count), static_cast<off_t>(op.offset));
                break;
            case BlockIoOp::Kind::Sync: result = ::fdatasync(fd_); break;
            case BlockIoOp::Kind::Fallocate:
                result = ::fallocate(fd_, op.fallocate_mode, static_cast<off_t>(op.offset),
                                     static_cast<off_t>(op.length));
                break;
        }
        if (result >= 0) return result;
        if (errno != EINTR) return -errno;
    }
}

void ThreadPoolBlockIo::signal_completion() {
    const uint64_t one = 1;
    // EAGAIN (counter saturated) still leaves it readable: nothing is lost.
    [[maybe_unused]] ssize_t n = ::write(eventfd_.get(), &one, sizeof one);
}

}  // namespace minikvm
