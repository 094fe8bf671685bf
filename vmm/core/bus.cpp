#include "vmm/core/bus.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

namespace minikvm {

void Bus::add(uint64_t base, uint64_t length, BusDevice& device) {
    if (length == 0 || base + length < base)
        throw std::invalid_argument(fmt::format("{}: bad range {:#x}+{:#x}", name_, base, length));
    std::unique_lock lock(mutex_);
    auto next = ranges_.lower_bound(base);
    if (next != ranges_.end() && next->first < base + length)
        throw std::invalid_argument(fmt::format("{}: range {:#x}+{:#x} overlaps {:#x}", name_, base, length, next->first));
    if (next != ranges_.begin()) {
        auto previous = std::prev(next);
        if (previous->first + previous->second.length > base)
            throw std::invalid_argument(
                fmt::format("{}: range {:#x}+{:#x} overlaps {:#x}", name_, base, length, previous->first));
    }
    ranges_.emplace(base, Range{length, &device});
}

bool Bus::remove(uint64_t base) {
    std::unique_lock lock(mutex_);
    return ranges_.erase(base) > 0;
}

BusDevice* Bus::find(uint64_t address, uint64_t size, uint64_t& offset) const {
    auto it = ranges_.upper_bound(address);
    if (it == ranges_.begin()) return nullptr;
    --it;
    uint64_t start = it->first;
    offset = address - start;
    // The whole access must fit in the range (no straddling two devices).
    if (offset >= it->second.length || size > it->second.length - offset) return nullptr;
    return it->second.device;
}

bool Bus::read(uint64_t address, std::span<uint8_t> data) {
    BusDevice* device = nullptr;
    uint64_t offset = 0;
    {
        std::shared_lock lock(mutex_);
        device = find(address, data.size(), offset);
    }
    if (device == nullptr) {
        std::fill(data.begin(), data.end(), 0xff);
        note_unclaimed(address, data.size(), false);
        return false;
    }
    device->read(offset, data);
    return true;
}

bool Bus::write(uint64_t address, std::span<const uint8_t> data) {
    BusDevice* device = nullptr;
    uint64_t offset = 0;
    {
        std::shared_lock lock(mutex_);
        device = find(address, data.size(), offset);
    }
    if (device == nullptr) {
        note_unclaimed(address, data.size(), true);
        return false;
    }
    device->write(offset, data);
    return true;
}

void Bus::note_unclaimed(uint64_t address, size_t size, bool is_write) {
    std::lock_guard lock(unclaimed_mutex_);
    // Once per address: guests probe absent hardware in loops.
    if (!unclaimed_logged_.insert(address).second) return;
    spdlog::debug("{}: unclaimed {}-byte {} at {:#x}", name_, size, is_write ? "write" : "read", address);
}

}  // namespace minikvm
