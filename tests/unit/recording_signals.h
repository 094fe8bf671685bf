#pragma once
// A VirtioTransportSignals that counts what a device asks of its transport,
// for device tests without a transport. Thread-safe: some devices signal
// from their own threads (blk's completions, net's tap handler) while the
// test thread reads.

#include <atomic>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "virtio/virtio_device.h"

namespace test_helpers {

struct RecordingSignals : minikvm::VirtioTransportSignals {
    std::atomic<int> used{0};
    std::atomic<int> config{0};
    std::mutex mutex;
    std::vector<std::string> broken;  // reasons, in order; read under `mutex` while a device runs

    void signal_used_buffer(const minikvm::VirtQueue&) override { ++used; }
    void signal_config_change() override { ++config; }
    void signal_device_broken(std::string_view reason) override {
        std::lock_guard lock(mutex);
        broken.emplace_back(reason);
    }
    size_t broken_count() {
        std::lock_guard lock(mutex);
        return broken.size();
    }
};

}  // namespace test_helpers
