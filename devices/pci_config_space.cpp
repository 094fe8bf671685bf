#include "devices/pci_config_space.h"

#include <algorithm>
#include <bit>
#include <stdexcept>

#include <fmt/format.h>

namespace minikvm {

namespace {

constexpr uint8_t kHeaderTypeEndpoint = 0x00;  // type 0, bit 7 clear: single-function
constexpr uint32_t kIoBarTypeBits = 0x1;       // bit 0 set: I/O space
constexpr uint32_t kMemoryBarTypeBits = 0x0;   // 32-bit, anywhere below 4 GiB, not prefetchable
constexpr uint64_t kIoSpaceEnd = 0x1'0000;     // x86 I/O ports are 16-bit
constexpr uint64_t kMemoryDecodeEnd = 0xffff'ffff;  // a memory BAR must end before the last byte below 4 GiB

uint32_t bar_offset(unsigned index) { return PciConfigSpace::kBar0 + 4 * index; }

}  // namespace

PciConfigSpace::PciConfigSpace(const PciIdentity& identity) {
    if (identity.class_code > 0xff'ffff)
        throw std::invalid_argument(fmt::format("PCI class code {:#x} is wider than 24 bits", identity.class_code));
    set16(kVendorId, identity.vendor_id);
    set16(kDeviceId, identity.device_id);
    bytes_[kRevision] = identity.revision;
    bytes_[kClassCode] = static_cast<uint8_t>(identity.class_code);
    bytes_[kClassCode + 1] = static_cast<uint8_t>(identity.class_code >> 8);
    bytes_[kClassCode + 2] = static_cast<uint8_t>(identity.class_code >> 16);
    bytes_[kHeaderType] = kHeaderTypeEndpoint;
    set16(kSubsystemVendorId, identity.subsystem_vendor_id);
    set16(kSubsystemId, identity.subsystem_id);

    // Command: after reset nothing is enabled; the guest turns decoding on.
    const uint16_t command_mask = kCommandIoEnable | kCommandMemoryEnable | kCommandBusMaster | kCommandIntxDisable;
    writable_[kCommand] = static_cast<uint8_t>(command_mask);
    writable_[kCommand + 1] = static_cast<uint8_t>(command_mask >> 8);
    write_one_clear_[kStatus] = static_cast<uint8_t>(kStatusWriteOneToClear);
    write_one_clear_[kStatus + 1] = static_cast<uint8_t>(kStatusWriteOneToClear >> 8);
    // Linux writes the cache line size and reads it back; QEMU keeps it too.
    writable_[kCacheLineSize] = 0xff;
    // Firmware (here: the host bridge) and drivers may record the IRQ.
    writable_[kInterruptLine] = 0xff;
}

void PciConfigSpace::read(uint32_t offset, std::span<uint8_t> data) const {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < data.size(); ++i) {
        const uint64_t at = uint64_t{offset} + i;
        data[i] = at < kSize ? bytes_[at] : 0xff;
    }
}

PciConfigChanges PciConfigSpace::write(uint32_t offset, std::span<const uint8_t> data) {
    std::lock_guard lock(mutex_);
    const uint16_t old_command = get16(kCommand);
    std::array<uint32_t, kBarCount> old_bar_addresses{};
    for (unsigned i = 0; i < kBarCount; ++i) old_bar_addresses[i] = bar_address_locked(i);

    for (size_t i = 0; i < data.size(); ++i) {
        const uint64_t at = uint64_t{offset} + i;
        if (at >= kSize) break;
        const uint8_t value = data[i];
        bytes_[at] &= static_cast<uint8_t>(~(value & write_one_clear_[at]));
        bytes_[at] = static_cast<uint8_t>((bytes_[at] & ~writable_[at]) | (value & writable_[at]));
    }

    PciConfigChanges changes;
    const uint16_t flipped = old_command ^ get16(kCommand);
    changes.io_enable_changed = (flipped & kCommandIoEnable) != 0;
    changes.memory_enable_changed = (flipped & kCommandMemoryEnable) != 0;
    changes.intx_disable_changed = (flipped & kCommandIntxDisable) != 0;
    for (unsigned i = 0; i < kBarCount; ++i)
        if (bar_address_locked(i) != old_bar_addresses[i]) changes.moved_bars |= static_cast<uint8_t>(1u << i);
    return changes;
}

void PciConfigSpace::declare_bar(unsigned index, PciBarKind kind, uint32_t size) {
    if (index >= kBarCount) throw std::invalid_argument(fmt::format("PCI BAR index {} is not 0-5", index));
    const bool io = kind == PciBarKind::Io;
    const bool size_ok = std::has_single_bit(size) &&
                         (io ? size >= kMinIoBarSize && size <= kMaxIoBarSize : size >= kMinMemoryBarSize);
    if (!size_ok)
        throw std::invalid_argument(fmt::format("PCI BAR{}: {} size {:#x} is not a power of two in {}", index,
                                                io ? "I/O" : "memory", size, io ? "4..256" : "16..2 GiB"));
    std::lock_guard lock(mutex_);
    if (bars_[index].size != 0) throw std::invalid_argument(fmt::format("PCI BAR{} is declared twice", index));
    bars_[index] = Bar{kind, size};
    // The sizing protocol in one line: bits below the size are not writable,
    // so all-ones reads back as ~(size - 1) with the read-only type bits.
    set32(bar_offset(index), io ? kIoBarTypeBits : kMemoryBarTypeBits);
    set_write_mask32(bar_offset(index), ~(size - 1));
}

void PciConfigSpace::set_bar_address(unsigned index, uint32_t address) {
    std::lock_guard lock(mutex_);
    if (index >= kBarCount || bars_[index].size == 0)
        throw std::invalid_argument(fmt::format("PCI BAR{} is not declared", index));
    const Bar& bar = bars_[index];
    if ((address & (bar.size - 1)) != 0)
        throw std::invalid_argument(fmt::format("PCI BAR{}: {:#x} is not aligned to its size {:#x}", index, address, bar.size));
    set32(bar_offset(index), address | (bar.kind == PciBarKind::Io ? kIoBarTypeBits : kMemoryBarTypeBits));
}

uint32_t PciConfigSpace::bar_address(unsigned index) const {
    std::lock_guard lock(mutex_);
    return bar_address_locked(index);
}

std::optional<uint32_t> PciConfigSpace::bar_decode_address(unsigned index) const {
    std::lock_guard lock(mutex_);
    return bar_decode_address_locked(index);
}

uint32_t PciConfigSpace::bar_address_locked(unsigned index) const {
    if (index >= kBarCount || bars_[index].size == 0) return 0;
    // The write mask keeps the bits below the size at their type values.
    return get32(bar_offset(index)) & ~(bars_[index].size - 1);
}

std::optional<uint32_t> PciConfigSpace::bar_decode_address_locked(unsigned index) const {
    if (index >= kBarCount || bars_[index].size == 0) return std::nullopt;
    const Bar& bar = bars_[index];
    const bool io = bar.kind == PciBarKind::Io;
    if (!(get16(kCommand) & (io ? kCommandIoEnable : kCommandMemoryEnable))) return std::nullopt;
    const uint32_t address = bar_address_locked(index);
    const uint64_t end = uint64_t{address} + bar.size;
    if (address == 0 || end > (io ? kIoSpaceEnd : kMemoryDecodeEnd)) return std::nullopt;
    return address;
}

uint16_t PciConfigSpace::command() const {
    std::lock_guard lock(mutex_);
    return get16(kCommand);
}

uint16_t PciConfigSpace::status() const {
    std::lock_guard lock(mutex_);
    return get16(kStatus);
}

void PciConfigSpace::set_interrupt_pin(uint8_t pin) {
    if (pin > 4) throw std::invalid_argument(fmt::format("PCI interrupt pin {} is not 0-4", pin));
    std::lock_guard lock(mutex_);
    bytes_[kInterruptPin] = pin;
}

void PciConfigSpace::set_interrupt_line(uint8_t line) {
    std::lock_guard lock(mutex_);
    bytes_[kInterruptLine] = line;
}

void PciConfigSpace::set_interrupt_status(bool asserted) {
    std::lock_guard lock(mutex_);
    const uint16_t status = get16(kStatus);
    set16(kStatus, asserted ? status | kStatusInterrupt : status & ~kStatusInterrupt);
}

void PciConfigSpace::set_status_error(uint16_t bits) {
    if (bits & ~kStatusWriteOneToClear)
        throw std::invalid_argument(fmt::format("PCI status bits {:#x} are not error bits", bits));
    std::lock_guard lock(mutex_);
    set16(kStatus, get16(kStatus) | bits);
}

uint8_t PciConfigSpace::add_capability(uint8_t id, std::span<const uint8_t> body, std::span<const uint8_t> writable) {
    if (!writable.empty() && writable.size() != body.size())
        throw std::invalid_argument(fmt::format("PCI capability {:#x}: write mask of {} bytes for a body of {}", id,
                                                writable.size(), body.size()));
    std::lock_guard lock(mutex_);
    const uint32_t at = next_capability_;
    const size_t length = 2 + body.size();
    if (at + length > kSize)
        throw std::length_error(fmt::format("PCI capability {:#x} ({} bytes) does not fit in config space", id, length));
    place_capability_locked(at, id, body, writable);
    return static_cast<uint8_t>(at);
}

void PciConfigSpace::add_capability_at(uint8_t offset, uint8_t id, std::span<const uint8_t> body,
                                       std::span<const uint8_t> writable) {
    if (!writable.empty() && writable.size() != body.size())
        throw std::invalid_argument(fmt::format("PCI capability {:#x}: write mask of {} bytes for a body of {}", id,
                                                writable.size(), body.size()));
    std::lock_guard lock(mutex_);
    const uint32_t at = offset;
    const uint32_t end = at + 2 + static_cast<uint32_t>(body.size());
    if (at < kFirstCapability || at % 4 != 0 || end > kSize)
        throw std::invalid_argument(
            fmt::format("PCI capability {:#x} at {:#x} ({} bytes): not a dword-aligned place in 0x40-0xff", id, at,
                        end - at));
    // Walk the list: every capability so far spans from its offset to the
    // next one's or the end of what it holds; overlap is refused.
    for (uint32_t cap = bytes_[kCapabilitiesPointer]; cap != 0; cap = bytes_[cap + 1]) {
        const auto found = std::find_if(capability_ends_.begin(), capability_ends_.end(),
                                        [&](const auto& entry) { return entry.first == cap; });
        const uint32_t cap_end = found != capability_ends_.end() ? found->second : cap + 2;
        if (at < cap_end && cap < end)
            throw std::invalid_argument(
                fmt::format("PCI capability {:#x} at {:#x} overlaps the capability at {:#x}", id, at, cap));
    }
    place_capability_locked(at, id, body, writable);
}

void PciConfigSpace::place_capability_locked(uint32_t at, uint8_t id, std::span<const uint8_t> body,
                                             std::span<const uint8_t> writable) {
    const size_t length = 2 + body.size();
    bytes_[at] = id;
    bytes_[at + 1] = 0;  // end of list, until another capability follows
    std::copy(body.begin(), body.end(), bytes_.begin() + at + 2);
    std::copy(writable.begin(), writable.end(), writable_.begin() + at + 2);

    if (last_capability_ == 0) {
        bytes_[kCapabilitiesPointer] = static_cast<uint8_t>(at);
        set16(kStatus, get16(kStatus) | kStatusCapabilitiesList);
    } else {
        bytes_[last_capability_ + 1u] = static_cast<uint8_t>(at);
    }
    last_capability_ = static_cast<uint8_t>(at);
    capability_ends_.emplace_back(at, static_cast<uint32_t>(at + length));
    // Capability pointers are dword-aligned (their low two bits are
    // reserved); the next one goes after the furthest so far.
    next_capability_ = std::max(next_capability_, static_cast<uint32_t>((at + length + 3) & ~size_t{3}));
}

uint16_t PciConfigSpace::get16(uint32_t offset) const {
    return static_cast<uint16_t>(bytes_[offset] | bytes_[offset + 1] << 8);
}

uint32_t PciConfigSpace::get32(uint32_t offset) const {
    return uint32_t{get16(offset)} | uint32_t{get16(offset + 2)} << 16;
}

void PciConfigSpace::set16(uint32_t offset, uint16_t value) {
    bytes_[offset] = static_cast<uint8_t>(value);
    bytes_[offset + 1] = static_cast<uint8_t>(value >> 8);
}

void PciConfigSpace::set32(uint32_t offset, uint32_t value) {
    set16(offset, static_cast<uint16_t>(value));
    set16(offset + 2, static_cast<uint16_t>(value >> 16));
}

void PciConfigSpace::set_write_mask32(uint32_t offset, uint32_t mask) {
    for (unsigned i = 0; i < 4; ++i) writable_[offset + i] = static_cast<uint8_t>(mask >> (8 * i));
}

}  // namespace minikvm
