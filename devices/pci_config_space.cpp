#include "devices/pci_config_space.h"

#include <algorithm>
#include <bit>
#include <iterator>
#include <stdexcept>

#include <fmt/format.h>

namespace minikvm {

namespace {

constexpr uint8_t kHeaderTypeEndpoint = 0x00;  // type 0, bit 7 clear: single-function
constexpr uint32_t kIoBarTypeBits = 0x1;         // bit 0 set: I/O space
constexpr uint32_t kMemory64BarTypeBits = 0x4;   // bits 2:1 = 10: anywhere in 64-bit space (32-bit: 00)
constexpr uint32_t kPrefetchableBit = 0x8;       // bit 3: reads have no side effects
constexpr uint64_t kIoSpaceEnd = 0x1'0000;       // x86 I/O ports are 16-bit
constexpr uint64_t kMemory32AddressEnd = 0x1'0000'0000;
constexpr uint64_t kMemory32DecodeEnd = 0xffff'ffff;  // a 32-bit memory BAR must end before the last byte below 4 GiB

uint32_t bar_offset(unsigned index) { return PciConfigSpace::kBar0 + 4 * index; }

// The read-only low bits of a BAR register.
uint32_t bar_type_bits(PciBarKind kind, bool prefetchable) {
    if (kind == PciBarKind::Io) return kIoBarTypeBits;
    return (kind == PciBarKind::Memory64 ? kMemory64BarTypeBits : 0) | (prefetchable ? kPrefetchableBit : 0);
}

// The address bits of a BAR of `size` bytes: of the register holding bits
// 31:0 (all but the type bits) and of a 64-bit BAR's upper register.
uint32_t lower_address_mask(uint64_t size) { return static_cast<uint32_t>(~(size - 1)); }
uint32_t upper_address_mask(uint64_t size) { return static_cast<uint32_t>(~(size - 1) >> 32); }

// What differs between the kinds of BAR, in PciBarKind's order.
struct BarKindTraits {
    const char* name;
    const char* trace_name;
    uint64_t min_size;
    uint64_t max_size;
    const char* size_range;
};
constexpr BarKindTraits kBarKinds[] = {
    {"I/O", "io", PciConfigSpace::kMinIoBarSize, PciConfigSpace::kMaxIoBarSize, "4..256"},
    {"32-bit memory", "mem", PciConfigSpace::kMinMemoryBarSize, PciConfigSpace::kMaxMemory32BarSize, "16..2 GiB"},
    {"64-bit memory", "mem64", PciConfigSpace::kMinMemoryBarSize, uint64_t{1} << 63, "16..2^63"},
};
static_assert(std::size(kBarKinds) == static_cast<size_t>(PciBarKind::Memory64) + 1);

const BarKindTraits& traits(PciBarKind kind) { return kBarKinds[static_cast<size_t>(kind)]; }

}  // namespace

const char* to_string(PciBarKind kind) { return traits(kind).name; }
const char* trace_name(PciBarKind kind) { return traits(kind).trace_name; }

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
    std::array<uint64_t, kBarCount> old_bar_addresses{};
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

void PciConfigSpace::declare_bar(unsigned index, PciBarKind kind, uint64_t size, bool prefetchable) {
    const bool wide = kind == PciBarKind::Memory64;
    if (index >= kBarCount || (wide && index + 1 >= kBarCount))
        throw std::invalid_argument(fmt::format("PCI BAR{}: index is not {}", index,
                                                wide ? "0-4 (a 64-bit BAR takes two registers)" : "0-5"));
    const BarKindTraits& limits = traits(kind);
    if (!std::has_single_bit(size) || size < limits.min_size || size > limits.max_size)
        throw std::invalid_argument(fmt::format("PCI BAR{}: {} size {:#x} is not a power of two in {}", index,
                                                limits.name, size, limits.size_range));
    if (prefetchable && kind == PciBarKind::Io)
        throw std::invalid_argument(fmt::format("PCI BAR{}: an I/O BAR cannot be prefetchable", index));
    std::lock_guard lock(mutex_);
    for (unsigned i = index; i <= index + (wide ? 1 : 0); ++i) {
        if (bars_[i].size != 0 || bars_[i].upper_half)
            throw std::invalid_argument(
                i == index ? fmt::format("PCI BAR{} is declared twice", index)
                           : fmt::format("PCI BAR{}: a 64-bit BAR needs register BAR{} as well, which is taken", index, i));
    }
    bars_[index] = Bar{kind, size, prefetchable, false};
    // The sizing protocol in one line: bits below the size are not writable,
    // so all-ones reads back as ~(size - 1) with the read-only type bits --
    // across both registers of a 64-bit BAR.
    set32(bar_offset(index), bar_type_bits(kind, prefetchable));
    set_write_mask32(bar_offset(index), lower_address_mask(size));
    if (wide) {
        bars_[index + 1].upper_half = true;
        set_write_mask32(bar_offset(index + 1), upper_address_mask(size));
    }
}

void PciConfigSpace::set_bar_address(unsigned index, uint64_t address) {
    std::lock_guard lock(mutex_);
    if (index >= kBarCount || bars_[index].size == 0)
        throw std::invalid_argument(fmt::format("PCI BAR{} is not declared", index));
    const Bar& bar = bars_[index];
    if ((address & (bar.size - 1)) != 0)
        throw std::invalid_argument(fmt::format("PCI BAR{}: {:#x} is not aligned to its size {:#x}", index, address, bar.size));
    const uint64_t limit = bar.kind == PciBarKind::Io ? kIoSpaceEnd : kMemory32AddressEnd;
    if (bar.kind != PciBarKind::Memory64 && address + bar.size > limit)
        throw std::invalid_argument(fmt::format("PCI BAR{}: {} {:#x}+{:#x} ends past {:#x}", index, to_string(bar.kind),
                                                address, bar.size, limit));
    set32(bar_offset(index), static_cast<uint32_t>(address) | bar_type_bits(bar.kind, bar.prefetchable));
    if (bar.kind == PciBarKind::Memory64) set32(bar_offset(index + 1), static_cast<uint32_t>(address >> 32));
}

uint64_t PciConfigSpace::bar_address(unsigned index) const {
    std::lock_guard lock(mutex_);
    return bar_address_locked(index);
}

std::optional<uint64_t> PciConfigSpace::bar_decode_address(unsigned index) const {
    std::lock_guard lock(mutex_);
    return bar_decode_address_locked(index);
}

std::optional<PciBarKind> PciConfigSpace::bar_kind(unsigned index) const {
    std::lock_guard lock(mutex_);
    if (index >= kBarCount || bars_[index].size == 0) return std::nullopt;
    return bars_[index].kind;
}

uint64_t PciConfigSpace::bar_size(unsigned index) const {
    std::lock_guard lock(mutex_);
    return index < kBarCount ? bars_[index].size : 0;
}

uint64_t PciConfigSpace::bar_address_locked(unsigned index) const {
    if (index >= kBarCount || bars_[index].size == 0) return 0;
    uint64_t value = get32(bar_offset(index));
    if (bars_[index].kind == PciBarKind::Memory64) value |= uint64_t{get32(bar_offset(index + 1))} << 32;
    // The write mask keeps the bits below the size at their type values.
    return value & ~(bars_[index].size - 1);
}

std::optional<uint64_t> PciConfigSpace::bar_decode_address_locked(unsigned index) const {
    if (index >= kBarCount || bars_[index].size == 0) return std::nullopt;
    const Bar& bar = bars_[index];
    const bool io = bar.kind == PciBarKind::Io;
    if (!(get16(kCommand) & (io ? kCommandIoEnable : kCommandMemoryEnable))) return std::nullopt;
    const uint64_t address = bar_address_locked(index);
    if (address == 0) return std::nullopt;
    if (bar.kind != PciBarKind::Memory64) {
        const uint64_t end = address + bar.size;
        if (end > (io ? kIoSpaceEnd : kMemory32DecodeEnd)) return std::nullopt;
        return address;
    }
    // Sizing goes one register at a time, so either may hold all-ones while
    // the other holds an address. This also refuses the one place that
    // reaches the last byte below 2^64 (aligned, the BAR cannot wrap): all
    // address bits set.
    const auto sizing = [](uint32_t value, uint32_t mask) { return mask != 0 && (value & mask) == mask; };
    if (sizing(get32(bar_offset(index)), lower_address_mask(bar.size)) ||
        sizing(get32(bar_offset(index + 1)), upper_address_mask(bar.size)))
        return std::nullopt;
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
