#pragma once
// An ordered set of address ranges, each served by a device. vCPU exit
// handlers only look up and call; the I/O port space (IoBus) and the MMIO
// space (MmioBus) are two instances. Ranges can be added, removed and moved
// while vCPUs run (the guest relocating a PCI BAR), hence the shared mutex.

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>

namespace minikvm {

// A device model's view of an access: `offset` is relative to the start of
// the range it was registered at; data.size() is the access width.
class BusDevice {
public:
    virtual ~BusDevice() = default;
    virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
    virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
public:
    explicit Bus(std::string name) : name_(std::move(name)) {}

    // Throws std::invalid_argument when the range is empty, wraps, or overlaps.
    void add(uint64_t base, uint64_t length, BusDevice& device);
    // Removes the range starting at `base`; returns false if there was none.
    bool remove(uint64_t base);

    // Dispatch an access. Returns false when no device claims the whole
    // access; then reads are filled with all-ones (like a floating bus) and
    // the address is logged once at debug level.
    bool read(uint64_t address, std::span<uint8_t> data);
    bool write(uint64_t address, std::span<const uint8_t> data);

private:
    struct Range {
        uint64_t length;
        BusDevice* device;
    };
    // Returns the device and offset for a whole access, or nullptr.
    BusDevice* find(uint64_t address, uint64_t size, uint64_t& offset) const;
    void note_unclaimed(uint64_t address, size_t size, bool is_write);

    std::string name_;
    mutable std::shared_mutex mutex_;
    std::map<uint64_t, Range> ranges_;  // keyed by base address
    std::mutex unclaimed_mutex_;
    std::set<uint64_t> unclaimed_logged_;
};

using IoBus = Bus;
using MmioBus = Bus;

}  // namespace minikvm
