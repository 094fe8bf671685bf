#pragma once
// KVM memory slots beyond guest RAM, added and removed while the guest runs:
// an assigned device's BARs, mmapped from VFIO, so guest accesses to them
// need no exit. MemorySlots hands out slot numbers (RAM keeps the first
// ones) up to KVM's limit; a MemorySlot is one registered range and deletes
// it from KVM when it goes. Thread-safe: vCPU threads move BARs.

#include <cstdint>
#include <mutex>
#include <set>
#include <utility>

namespace minikvm {

class Vm;
class MemorySlots;

class MemorySlot {
public:
    MemorySlot() = default;
    MemorySlot(MemorySlot&& other) noexcept
        : owner_(std::exchange(other.owner_, nullptr)), slot_(other.slot_), guest_address_(other.guest_address_),
          size_(other.size_) {}
    MemorySlot& operator=(MemorySlot&& other) noexcept;
    MemorySlot(const MemorySlot&) = delete;
    MemorySlot& operator=(const MemorySlot&) = delete;
    ~MemorySlot() { reset(); }

    explicit operator bool() const { return owner_ != nullptr; }
    uint32_t slot() const { return slot_; }
    uint64_t guest_address() const { return guest_address_; }
    uint64_t size() const { return size_; }
    // Deletes the slot from KVM now; a failure is logged, not thrown.
    void reset() noexcept;

private:
    friend class MemorySlots;
    MemorySlot(MemorySlots* owner, uint32_t slot, uint64_t guest_address, uint64_t size)
        : owner_(owner), slot_(slot), guest_address_(guest_address), size_(size) {}

    MemorySlots* owner_ = nullptr;
    uint32_t slot_ = 0;
    uint64_t guest_address_ = 0;
    uint64_t size_ = 0;
};

class MemorySlots {
public:
    // Slots [first, limit) are ours; `limit` is KVM_CAP_NR_MEMSLOTS.
    MemorySlots(const Vm& vm, uint32_t first, uint32_t limit) : vm_(vm), first_(first), limit_(limit) {}

    // [guest_address, + size) backed by `host` (page-aligned, size a
    // multiple of the page size). std::runtime_error when every slot is
    // taken; std::system_error when KVM refuses (an overlap with RAM or
    // another slot).
    MemorySlot add(uint64_t guest_address, uint64_t size, void* host);
    size_t in_use() const;

private:
    friend class MemorySlot;
    void remove(uint32_t slot) noexcept;

    const Vm& vm_;
    const uint32_t first_;
    const uint32_t limit_;
    mutable std::mutex mutex_;
    std::set<uint32_t> used_;
};

}  // namespace minikvm
