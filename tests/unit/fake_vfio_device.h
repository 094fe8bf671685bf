#pragma once
// A VFIO device without a device, for the device model's tests and fuzz
// target: configuration space, BARs backed by plain bytes, and a record of
// what the model asked VFIO to do (interrupt eventfds, resets).

#include <linux/vfio.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "vmm/backends/vfio/vfio_device.h"

namespace minikvm::test {

class FakeVfioDevice : public VfioDeviceIo {
public:
    struct IrqCall {
        uint32_t index;
        uint32_t action;  // 0: disable_irq()
        uint32_t start;
        std::vector<int32_t> fds;
    };

    FakeVfioDevice() {
        regions_.resize(VFIO_PCI_NUM_REGIONS);
        for (uint32_t i = 0; i < regions_.size(); ++i) regions_[i].index = i;
        set_region(VFIO_PCI_CONFIG_REGION_INDEX, 256);
        irqs_.resize(VFIO_PCI_NUM_IRQS);
        for (uint32_t i = 0; i < irqs_.size(); ++i) irqs_[i].index = i;
    }

    // A region of `size` bytes (a BAR: backed by zeros).
    void set_region(uint32_t index, uint64_t size) {
        regions_[index].size = size;
        regions_[index].flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        if (index < VFIO_PCI_CONFIG_REGION_INDEX) bar_bytes[index].assign(size, 0);
    }
    void set_irq_count(uint32_t index, uint32_t count) { irqs_[index].count = count; }
    void put16(uint32_t at, uint16_t value) { std::memcpy(&config[at], &value, 2); }
    void put32(uint32_t at, uint32_t value) { std::memcpy(&config[at], &value, 4); }
    uint16_t get16(uint32_t at) const {
        uint16_t value;
        std::memcpy(&value, &config[at], 2);
        return value;
    }

    const std::string& name() const override { return name_; }
    bool can_reset() const override { return true; }
    const std::vector<Region>& regions() const override { return regions_; }
    const std::vector<Irq>& irqs() const override { return irqs_; }
    bool read(uint32_t index, uint64_t offset, std::span<uint8_t> data) const override {
        if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
            if (offset > config.size() || data.size() > config.size() - offset) return false;
            std::copy_n(config.begin() + static_cast<long>(offset), data.size(), data.begin());
            return true;
        }
        const auto bar = bar_bytes.find(index);
        if (bar == bar_bytes.end() || offset > bar->second.size() || data.size() > bar->second.size() - offset)
            return false;
        std::copy_n(bar->second.begin() + static_cast<long>(offset), data.size(), data.begin());
        return true;
    }
    bool write(uint32_t index, uint64_t offset, std::span<const uint8_t> data) const override {
        if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
            if (offset > config.size() || data.size() > config.size() - offset) return false;
            std::copy(data.begin(), data.end(), config.begin() + static_cast<long>(offset));
            for (size_t i = 0; i < data.size(); ++i) config_writes.push_back(static_cast<uint32_t>(offset + i));
            return true;
        }
        auto bar = bar_bytes.find(index);
        if (bar == bar_bytes.end() || offset > bar->second.size() || data.size() > bar->second.size() - offset)
            return false;
        std::copy(data.begin(), data.end(), bar->second.begin() + static_cast<long>(offset));
        return true;
    }
    bool reset() const override {
        ++resets;
        return true;
    }
    bool set_irq_eventfds(uint32_t index, uint32_t action, uint32_t start, std::span<const int32_t> fds) override {
        irq_calls.push_back({index, action, start, std::vector<int32_t>(fds.begin(), fds.end())});
        return true;
    }
    bool disable_irq(uint32_t index) override {
        irq_calls.push_back({index, 0, 0, {}});
        return true;
    }
    std::optional<HostMapping> map_region(uint32_t) override { return std::nullopt; }

    mutable std::array<uint8_t, 256> config{};
    mutable std::map<uint32_t, std::vector<uint8_t>> bar_bytes;
    mutable std::vector<uint32_t> config_writes;  // every byte offset written through
    mutable int resets = 0;
    std::vector<IrqCall> irq_calls;

private:
    std::string name_ = "fake";
    std::vector<Region> regions_;
    std::vector<Irq> irqs_;
};

}  // namespace minikvm::test
