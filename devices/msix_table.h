#pragma once
// The MSI-X table and Pending Bit Array of one PCI function (PCI Local Bus
// 3.0 / PCIe 6.8.2), as the guest sees them through a BAR: 16 bytes per
// vector (message address, upper address, data, vector control with its
// mask bit) and one pending bit per vector. The rules a driver relies on:
// - every vector starts masked;
// - a vector signalled while masked (its own mask or the function mask)
//   sets its pending bit instead, and is delivered once when unmasked:
//   never lost, never duplicated (signals while pending coalesce, as on
//   hardware);
// - the PBA is read-only; reserved bits of vector control read as zero.
// A message whose address is not in the x86 interrupt window (0xFEExxxxx,
// upper half zero) would be a DMA write, not an interrupt; one with
// reserved data bits set (31-16, or delivery mode 011 or 110) means nothing
// to the CPU. Both are refused (counted, reported through `on_refused`),
// never delivered.
//
// Accesses of any width and offset inside the table are merged bytewise
// (the spec asks for aligned dwords or qwords; other widths are undefined
// there). Thread-safe: vCPU threads write the table while the event loop
// signals vectors; `deliver` runs with the table's lock held, so it must
// not call back into the table.

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "vmm/core/gsi_routing.h"

namespace minikvm {

class MsixTable {
public:
    static constexpr uint32_t kEntryBytes = 16;
    static constexpr uint32_t kVectorControlMask = 1;  // bit 0 of dword 3
    static constexpr uint16_t kMaxVectors = 2048;      // the capability's 11-bit table size

    enum class Signal { Delivered, Pending, Disabled, Refused };

    using Deliver = std::function<void(uint16_t vector, const MsiMessage& message)>;
    using Refused = std::function<void(uint16_t vector, const MsiMessage& message)>;

    // `vectors`: 1 to kMaxVectors.
    MsixTable(uint16_t vectors, Deliver deliver, Refused on_refused = {});

    uint16_t vectors() const { return static_cast<uint16_t>(entries_.size()); }
    uint32_t table_bytes() const { return vectors() * kEntryBytes; }
    // Whole qwords, as the spec lays the PBA out.
    uint32_t pba_bytes() const { return ((vectors() + 63u) / 64u) * 8u; }

    // `offset` from the start of the table (or PBA); bytes outside read as
    // zero and are ignored on writes.
    void read_table(uint64_t offset, std::span<uint8_t> data) const;
    void write_table(uint64_t offset, std::span<const uint8_t> data);
    void read_pba(uint64_t offset, std::span<uint8_t> data) const;

    // The capability's Message Control bits 15 (enable) and 14 (function
    // mask), after a configuration write. Unmasking delivers what is pending.
    void set_control(bool enabled, bool function_masked);
    bool enabled() const;

    // The device raises `vector`: delivered, left pending, or not at all
    // (MSI-X disabled: the caller uses INTx; an out-of-range vector or a
    // refused message).
    Signal signal(uint16_t vector);

    bool pending(uint16_t vector) const;
    bool masked(uint16_t vector) const;
    // The message a signal of `vector` would be delivered with now, or
    // nullopt: MSI-X disabled, the function or the vector masked, or not an
    // interrupt message.
    std::optional<MsiMessage> deliverable_message(uint16_t vector) const;
    // An x86 interrupt message: the 0xFEExxxxx window, no reserved data bits.
    static bool valid_message(const MsiMessage& message);
    MsiMessage message(uint16_t vector) const;
    uint64_t refused_count() const;

    // Back to the power-on state: every vector masked, nothing pending,
    // disabled (a function-level reset).
    void reset();
    // Forgets every pending signal, masks and messages untouched: the
    // device's own reset (what was pending is no longer the driver's).
    void clear_pending();

private:
    struct Entry {
        uint8_t bytes[kEntryBytes] = {};
        bool pending = false;
    };
    static MsiMessage message_of(const Entry& entry);
    static bool entry_masked(const Entry& entry);
    // With the lock held: deliver (or refuse) `vector` now.
    Signal deliver_locked(uint16_t vector);
    void deliver_pending_locked();

    mutable std::mutex mutex_;
    std::vector<Entry> entries_;
    Deliver deliver_;
    Refused on_refused_;
    bool enabled_ = false;
    bool function_masked_ = false;
    uint64_t refused_ = 0;
};

}  // namespace minikvm
