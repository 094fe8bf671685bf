#include "vmm/core/memory_slots.h"

#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/core/vm.h"

namespace minikvm {

MemorySlot& MemorySlot::operator=(MemorySlot&& other) noexcept {
    if (this != &other) {
        reset();
        owner_ = std::exchange(other.owner_, nullptr);
        slot_ = other.slot_;
        guest_address_ = other.guest_address_;
        size_ = other.size_;
    }
    return *this;
}

void MemorySlot::reset() noexcept {
    if (owner_ != nullptr) std::exchange(owner_, nullptr)->remove(slot_);
}

MemorySlot MemorySlots::add(uint64_t guest_address, uint64_t size, void* host) {
    std::lock_guard lock(mutex_);
    uint32_t slot = first_;
    while (slot < limit_ && used_.count(slot) != 0) ++slot;
    if (slot >= limit_)
        throw std::runtime_error(fmt::format("KVM has no free memory slot (all {} in use)", limit_));
    vm_.set_memory_slot(slot, guest_address, size, host);
    used_.insert(slot);
    return MemorySlot(this, slot, guest_address, size);
}

size_t MemorySlots::in_use() const {
    std::lock_guard lock(mutex_);
    return used_.size();
}

void MemorySlots::remove(uint32_t slot) noexcept {
    std::lock_guard lock(mutex_);
    try {
        vm_.set_memory_slot(slot, 0, 0, nullptr);
    } catch (const std::exception& error) {
        // KVM refusing to delete a slot it made: the range stays mapped to
        // the device, nothing worse; the slot number is not reused.
        spdlog::error("removing KVM memory slot {}: {}", slot, error.what());
        return;
    }
    used_.erase(slot);
}

}  // namespace minikvm
