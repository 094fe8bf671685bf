#pragma once
// virtio-rng, the entropy device (virtio 1.2 section 5.4): one request queue
// whose device-writable buffers the device fills with random bytes from the
// host kernel (getrandom(2)); the guest's driver feeds them to /dev/hwrng
// and its entropy pool. No feature bits of its own, no configuration space.
//
// Each chain gets at most kMaxBytesPerChain bytes (the used length says how
// many; a driver takes whatever it gets). A chain with device-readable
// buffers breaks 5.4.6.1 ("the driver MUST NOT place driver-readable
// buffers into the queue"): it completes with length 0, is counted and
// logged (rate-limited). Ring-rule violations are the queue's: reported to
// the transport, which stops the device.
//
// Threads: only the transport calls in (it serializes those calls), and
// the device has no threads of its own, so it needs no lock of its own.

#include <cstdint>
#include <span>
#include <string>

#include "virtio/used_batch.h"
#include "virtio/virtio_device.h"
#include "vmm/core/rate_limited_log.h"

namespace minikvm {

class VirtioRng : public VirtioDevice {
public:
    static constexpr unsigned kRequestQueue = 0;
    static constexpr uint16_t kQueueSize = 64;
    // Random bytes per chain at most: a bound on the work one kick does.
    static constexpr uint32_t kMaxBytesPerChain = 64u << 10;

    static constexpr VirtioDeviceKind kKind{.type = VirtioDeviceType::Entropy,
                                            .name = "entropy",
                                            .pci_device_id = 0x1005,
                                            .pci_class = 0x00'ff'00,  // unclassified, "other" (as QEMU)
                                            .guest_kconfig = "CONFIG_HW_RANDOM_VIRTIO"};

    // `name` prefixes log lines ("virtio-rng0").
    explicit VirtioRng(std::string name);

    // VirtioDevice
    const VirtioDeviceKind& kind() const override { return kKind; }
    uint64_t device_features() const override;
    unsigned queue_count() const override { return 1; }
    uint16_t queue_max_size(unsigned) const override { return kQueueSize; }
    uint32_t config_size() const override { return 0; }
    void read_config(uint32_t, std::span<uint8_t>) override {}
    void write_config(uint32_t, std::span<const uint8_t>) override {}
    void activate(uint64_t negotiated_features, std::span<VirtQueue> queues,
                  VirtioTransportSignals& signals) override;
    void reset() override;
    void queue_notified(unsigned index) override;
    std::string state_lines() const override;

    struct Stats {
        uint64_t requests = 0;   // chains completed, every outcome
        uint64_t bytes = 0;      // random bytes handed to the guest
        uint64_t malformed = 0;  // chains with device-readable buffers
    };
    Stats stats() const { return stats_; }

private:
    void serve_queue();
    // Fills `buffer` from getrandom(2); returns the bytes written.
    size_t fill(std::span<uint8_t> buffer);

    const std::string name_;
    std::span<VirtQueue> queues_;  // empty while not active
    VirtioTransportSignals* signals_ = nullptr;
    UsedBatch used_;
    Stats stats_;
    RateLimitedLog log_;
};

}  // namespace minikvm
