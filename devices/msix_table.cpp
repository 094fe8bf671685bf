#include "devices/msix_table.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace minikvm {

MsixTable::MsixTable(uint16_t vectors, Deliver deliver, Refused on_refused)
    : entries_(vectors), deliver_(std::move(deliver)), on_refused_(std::move(on_refused)) {
    if (vectors == 0 || vectors > kMaxVectors) throw std::invalid_argument("MSI-X: 1 to 2048 vectors");
    reset();
}

void MsixTable::reset() {
    std::lock_guard lock(mutex_);
    for (Entry& entry : entries_) {
        entry = Entry{};
        entry.bytes[12] = kVectorControlMask;  // every vector starts masked
    }
    enabled_ = false;
    function_masked_ = false;
}

void MsixTable::clear_pending() {
    std::lock_guard lock(mutex_);
    for (Entry& entry : entries_) entry.pending = false;
}

MsiMessage MsixTable::message_of(const Entry& entry) {
    uint32_t low = 0, high = 0, data = 0;
    std::memcpy(&low, entry.bytes, 4);
    std::memcpy(&high, entry.bytes + 4, 4);
    std::memcpy(&data, entry.bytes + 8, 4);
    return {uint64_t{high} << 32 | low, data};
}

bool MsixTable::entry_masked(const Entry& entry) { return (entry.bytes[12] & kVectorControlMask) != 0; }

bool MsixTable::valid_message(const MsiMessage& message) {
    // The x86 interrupt window: address bits 31-20 are 0xFEE, nothing above.
    if ((message.address >> 20) != 0xfee) return false;
    // Data (Intel SDM vol. 3, 11.11.2): bits 31-16 are reserved, and so are
    // delivery modes 011 and 110.
    if ((message.data >> 16) != 0) return false;
    const uint32_t delivery_mode = (message.data >> 8) & 7;
    return delivery_mode != 3 && delivery_mode != 6;
}

void MsixTable::read_table(uint64_t offset, std::span<uint8_t> data) const {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < data.size(); ++i) {
        const uint64_t at = offset + i;
        data[i] = at < table_bytes() ? entries_[at / kEntryBytes].bytes[at % kEntryBytes] : 0;
    }
}

void MsixTable::write_table(uint64_t offset, std::span<const uint8_t> data) {
    std::lock_guard lock(mutex_);
    std::vector<uint16_t> unmasked;
    for (size_t i = 0; i < data.size(); ++i) {
        const uint64_t at = offset + i;
        if (at >= table_bytes()) break;
        Entry& entry = entries_[at / kEntryBytes];
        const size_t byte = at % kEntryBytes;
        if (byte >= 12) {
            // Vector control: only the mask bit is writable; the rest is reserved (reads 0).
            if (byte != 12) continue;
            const bool was_masked = entry_masked(entry);
            entry.bytes[12] = data[i] & kVectorControlMask;
            if (was_masked && !entry_masked(entry)) unmasked.push_back(static_cast<uint16_t>(at / kEntryBytes));
            continue;
        }
        entry.bytes[byte] = data[i];
    }
    // A vector unmasked with its pending bit set is delivered now, once.
    if (enabled_ && !function_masked_)
        for (uint16_t vector : unmasked)
            if (entries_[vector].pending) deliver_locked(vector);
}

void MsixTable::read_pba(uint64_t offset, std::span<uint8_t> data) const {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < data.size(); ++i) {
        const uint64_t at = offset + i;
        uint8_t byte = 0;
        for (unsigned bit = 0; bit < 8 && at < pba_bytes(); ++bit) {
            const uint64_t vector = at * 8 + bit;
            if (vector < entries_.size() && entries_[vector].pending) byte |= static_cast<uint8_t>(1u << bit);
        }
        data[i] = byte;
    }
}

void MsixTable::set_control(bool enabled, bool function_masked) {
    std::lock_guard lock(mutex_);
    enabled_ = enabled;
    function_masked_ = function_masked;
    if (enabled_ && !function_masked_) deliver_pending_locked();
}

bool MsixTable::enabled() const {
    std::lock_guard lock(mutex_);
    return enabled_;
}

MsixTable::Signal MsixTable::signal(uint16_t vector) {
    std::lock_guard lock(mutex_);
    if (!enabled_) return Signal::Disabled;
    if (vector >= entries_.size()) return Signal::Refused;
    Entry& entry = entries_[vector];
    if (function_masked_ || entry_masked(entry)) {
        entry.pending = true;  // a second signal while pending coalesces
        return Signal::Pending;
    }
    return deliver_locked(vector);
}

MsixTable::Signal MsixTable::deliver_locked(uint16_t vector) {
    Entry& entry = entries_[vector];
    entry.pending = false;
    const MsiMessage message = message_of(entry);
    if (!valid_message(message)) {
        ++refused_;
        if (on_refused_) on_refused_(vector, message);
        return Signal::Refused;
    }
    deliver_(vector, message);
    return Signal::Delivered;
}

void MsixTable::deliver_pending_locked() {
    for (size_t vector = 0; vector < entries_.size(); ++vector)
        if (entries_[vector].pending && !entry_masked(entries_[vector]))
            deliver_locked(static_cast<uint16_t>(vector));
}

bool MsixTable::pending(uint16_t vector) const {
    std::lock_guard lock(mutex_);
    return vector < entries_.size() && entries_[vector].pending;
}

bool MsixTable::masked(uint16_t vector) const {
    std::lock_guard lock(mutex_);
    return vector >= entries_.size() || entry_masked(entries_[vector]);
}

std::optional<MsiMessage> MsixTable::deliverable_message(uint16_t vector) const {
    std::lock_guard lock(mutex_);
    if (!enabled_ || function_masked_ || vector >= entries_.size() || entry_masked(entries_[vector])) return std::nullopt;
    const MsiMessage message = message_of(entries_[vector]);
    if (!valid_message(message)) return std::nullopt;
    return message;
}

MsiMessage MsixTable::message(uint16_t vector) const {
    std::lock_guard lock(mutex_);
    return vector < entries_.size() ? message_of(entries_[vector]) : MsiMessage{};
}

uint64_t MsixTable::refused_count() const {
    std::lock_guard lock(mutex_);
    return refused_;
}

}  // namespace minikvm
