#include "virtio/virtio_rng.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "virtio/split_ring.h"

namespace minikvm {

VirtioRng::VirtioRng(std::string name) : name_(std::move(name)) {}

uint64_t VirtioRng::device_features() const {
    return (uint64_t{1} << split_ring::kFeatureIndirectDesc) | (uint64_t{1} << split_ring::kFeatureEventIdx);
}

void VirtioRng::activate(uint64_t, std::span<VirtQueue> queues, VirtioTransportSignals& signals) {
    queues_ = queues;
    signals_ = &signals;
    // A legacy driver may have posted buffers and kicked before DRIVER_OK.
    serve_queue();
}

void VirtioRng::reset() {
    queues_ = {};
    signals_ = nullptr;
    used_.clear();
}

void VirtioRng::queue_notified(unsigned index) {
    if (queues_.empty() || index != kRequestQueue) return;
    serve_queue();
}

void VirtioRng::serve_queue() {
    VirtQueue& queue = queues_[kRequestQueue];
    if (!queue.ready()) return;
    while (auto chain = queue.pop()) {
        uint32_t written = 0;
        if (!chain->readable.empty()) {
            ++stats_.malformed;
            log_.log(spdlog::level::warn,
                     fmt::format("{}: chain at head {} has {} device-readable buffer(s), which virtio 1.2 5.4.6.1 "
                                 "forbids; completed with used length 0",
                                 name_, chain->head, chain->readable.size()));
        } else {
            for (const WritableBuffer& buffer : chain->writable) {
                const size_t room = std::min<size_t>(buffer.bytes.size(), kMaxBytesPerChain - written);
                const size_t got = fill(buffer.bytes.first(room));
                written += static_cast<uint32_t>(got);
                if (got < room || written == kMaxBytesPerChain) break;
            }
        }
        ++stats_.requests;
        stats_.bytes += written;
        used_.add(chain->head, written);
    }
    if (queue.broken()) signals_->signal_device_broken(queue.broken_reason());
    used_.publish(queue, *signals_);
}

size_t VirtioRng::fill(std::span<uint8_t> buffer) {
    size_t done = 0;
    while (done < buffer.size()) {
        const ssize_t n = ::getrandom(buffer.data() + done, buffer.size() - done, 0);
        if (n > 0) {
            done += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        // getrandom cannot fail once the pool is up; if it ever does, the
        // guest gets fewer bytes, never made-up ones.
        log_.log(spdlog::level::err, fmt::format("{}: getrandom: {}", name_, n < 0 ? std::strerror(errno) : "no bytes"));
        break;
    }
    return done;
}

std::string VirtioRng::state_lines() const {
    return fmt::format("requests={} bytes={} malformed={}\n", stats_.requests, stats_.bytes, stats_.malformed);
}

}  // namespace minikvm
