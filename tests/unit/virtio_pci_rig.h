#pragma once
// A legacy virtio-pci transport on a fake VirtioDevice, real guest RAM and
// a fake INTx line, with register access as the guest makes it: what the
// transport's unit tests share.

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "test_helpers.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_device.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_rng.h"
#include "virtio/virtio_pci_legacy.h"
#include "vmm/core/guest_memory.h"

namespace virtio_pci_rig {

using namespace minikvm;
using V = VirtioPciLegacy;

constexpr uint64_t kRamSize = 16ULL << 20;
constexpr uint32_t kRingPfn = 0x10;        // 64 KiB
constexpr uint32_t kRingPfn2 = 0x20;       // 128 KiB
constexpr uint32_t kPfnOutsideRam = 0x100000;  // 4 GiB, far past 16 MiB of RAM
constexpr uint8_t kHandshake = V::kStatusAcknowledge | V::kStatusDriver;
constexpr uint8_t kReady = kHandshake | V::kStatusDriverOk;

// The identity a fake device states: the real devices' kinds, so the
// transport's PCI identity can be checked against them.
inline const VirtioDeviceKind& kind_of(VirtioDeviceType type) {
    static constexpr VirtioDeviceKind kUnknown{.type = VirtioDeviceType{9}, .name = "type 9", .pci_device_id = 0x0009,
                                               .pci_class = 0, .guest_kconfig = ""};
    switch (type) {
        case VirtioDeviceType::Net: return VirtioNet::kKind;
        case VirtioDeviceType::Block: return VirtioBlk::kKind;
        case VirtioDeviceType::Console: return VirtioConsole::kKind;
        case VirtioDeviceType::Entropy: return VirtioRng::kKind;
        default: break;
    }
    return kUnknown;
}

class FakeDevice : public VirtioDevice {
public:
    explicit FakeDevice(VirtioDeviceType type = VirtioDeviceType::Console, uint32_t config_size = 12,
                        std::vector<uint16_t> sizes = {64, 128})
        : type_(type), sizes_(std::move(sizes)), config_(config_size) {
        for (size_t i = 0; i < config_.size(); ++i) config_[i] = static_cast<uint8_t>(0xa0 + i);
    }

    const VirtioDeviceKind& kind() const override { return kind_of(type_); }
    uint64_t device_features() const override { return features; }
    unsigned queue_count() const override { return static_cast<unsigned>(sizes_.size()); }
    uint16_t queue_max_size(unsigned index) const override { return sizes_.at(index); }
    uint32_t config_size() const override { return static_cast<uint32_t>(config_.size()); }
    void read_config(uint32_t offset, std::span<uint8_t> data) override {
        REQUIRE(offset + data.size() <= config_.size());
        std::memcpy(data.data(), config_.data() + offset, data.size());
    }
    void write_config(uint32_t offset, std::span<const uint8_t> data) override {
        REQUIRE(offset + data.size() <= config_.size());
        std::memcpy(config_.data() + offset, data.data(), data.size());
    }
    void activate(uint64_t negotiated, std::span<VirtQueue> queues, VirtioTransportSignals& signals) override {
        std::lock_guard lock(mutex);
        ++activations;
        negotiated_features = negotiated;
        queues_ = queues;
        signals_ = &signals;
        ready_at_activation.clear();
        for (const VirtQueue& queue : queues) ready_at_activation.push_back(queue.ready());
    }
    void reset() override {
        std::lock_guard lock(mutex);
        ++resets;
        queues_ = {};
        signals_ = nullptr;
    }
    void queue_notified(unsigned index) override {
        std::lock_guard lock(mutex);
        notified.push_back(index);
        if (signal_on_notify && signals_ != nullptr) signals_->signal_used_buffer(queues_[index]);
    }
    // The device raising the used-buffer interrupt of queue `index`, as a
    // real one does after pushing (only between activate() and reset()).
    void signal_used(unsigned index = 0) {
        VirtioTransportSignals* signals = nullptr;
        const VirtQueue* queue = nullptr;
        {
            std::lock_guard lock(mutex);
            signals = signals_;
            queue = index < queues_.size() ? &queues_[index] : nullptr;
        }
        REQUIRE(signals != nullptr);
        REQUIRE(queue != nullptr);
        signals->signal_used_buffer(*queue);
    }

    VirtioTransportSignals* signals() {
        std::lock_guard lock(mutex);
        return signals_;
    }
    std::span<VirtQueue> queues() {
        std::lock_guard lock(mutex);
        return queues_;
    }
    std::vector<unsigned> notified_copy() {
        std::lock_guard lock(mutex);
        return notified;
    }
    const std::vector<uint8_t>& config_bytes() const { return config_; }

    uint64_t features = 0x0000'0003'8000'0005ULL;  // bits 0, 2, 31 low; 32, 33 high
    bool signal_on_notify = false;
    std::mutex mutex;
    int activations = 0;
    int resets = 0;
    uint64_t negotiated_features = 0;
    std::vector<unsigned> notified;
    std::vector<bool> ready_at_activation;

private:
    VirtioDeviceType type_;
    std::vector<uint16_t> sizes_;
    std::vector<uint8_t> config_;
    std::span<VirtQueue> queues_;
    VirtioTransportSignals* signals_ = nullptr;
};

inline uint32_t reg_read(V& transport, uint64_t offset, size_t width) {
    uint8_t bytes[4] = {};
    transport.read(offset, std::span(bytes, width));
    return test_helpers::from_le(std::span(bytes, width));
}

inline void reg_write(V& transport, uint64_t offset, size_t width, uint32_t value) {
    uint8_t bytes[4] = {};
    test_helpers::to_le(value, std::span(bytes, width));
    transport.write(offset, std::span<const uint8_t>(bytes, width));
}

// A transport with its fake device, guest RAM and INTx line.
struct Rig {
    explicit Rig(FakeDevice* custom = nullptr)
        : device(custom != nullptr ? nullptr : std::make_unique<FakeDevice>()),
          dev(custom != nullptr ? *custom : *device),
          transport(dev, memory, "virtio-test") {
        transport.connect_intx(irq);
    }

    void place_queue(uint16_t index, uint32_t pfn) {
        reg_write(transport, V::kQueueSelect, 2, index);
        reg_write(transport, V::kQueuePfn, 4, pfn);
    }
    void driver_ok() { reg_write(transport, V::kStatus, 1, kReady); }

    GuestMemory memory = GuestMemory::allocate(kRamSize);
    std::unique_ptr<FakeDevice> device;
    FakeDevice& dev;
    test_helpers::FakeIrq irq;
    V transport;
};

}  // namespace virtio_pci_rig
