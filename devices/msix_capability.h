#pragma once
// An MSI-X capability (PCI Local Bus 3.0 section 6.8.2) as one piece: the
// capability structure in configuration space, and the table and Pending
// Bit Array it points at, served from a memory BAR of their own:
//
//   config space: ID 0x11 | next | Message Control | Table offset/BIR | PBA offset/BIR
//   Message Control: bits 10:0 table size - 1 (read-only), bit 14 function
//   mask, bit 15 MSI-X enable (the guest's to write)
//   the BAR: the table at 0 (16 bytes per vector), the PBA at pba_offset()
//   (2 KiB, as in QEMU, or after a larger table); at least 4 KiB, so the
//   BAR owns its page
//
// The owner (a PCI device) declares the BAR with bar_size(), maps this
// BusDevice on it, and calls config_written() after every guest write to
// its configuration space, so the enable and mask bits take effect (and
// unmasking delivers what is pending). While the command register's Bus
// Master Enable is clear the function sends no MSI (it is a memory write):
// signals go pending as under the function mask and are delivered once it
// is set again. The PBA is read-only; writes to it,
// or past the table and PBA, are ignored and logged once.
// Thread-safe like MsixTable.

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "devices/msix_table.h"
#include "devices/pci_config_space.h"
#include "vmm/core/bus.h"

namespace minikvm {

class MsixCapability : public BusDevice {
public:
    static constexpr uint8_t kCapabilityId = 0x11;
    static constexpr uint16_t kControlEnable = 0x8000;
    static constexpr uint16_t kControlFunctionMask = 0x4000;
    static constexpr uint32_t kMinBarSize = 4096;
    static constexpr uint32_t kDefaultPbaOffset = 2048;

    // Where the table and PBA are (BAR index and offset, 8-byte aligned)
    // and where the capability goes in configuration space (nullopt: the
    // next free place). An emulated device gives them a BAR of their own
    // (own_bar); an assigned one keeps the hardware's layout.
    struct Layout {
        unsigned table_bar = 0;
        uint32_t table_offset = 0;
        unsigned pba_bar = 0;
        uint32_t pba_offset = 0;
        std::optional<uint8_t> capability_offset;
    };
    // Table at 0 of `bar`, PBA at kDefaultPbaOffset (or after a larger table).
    static Layout own_bar(unsigned bar, uint16_t vectors);

    // Adds the capability to `config` (which must outlive this). `name`
    // prefixes log lines. Throws like PciConfigSpace::add_capability(_at),
    // or std::invalid_argument for a bad vector count or layout (a BAR
    // index past 5, unaligned offsets, table and PBA overlapping).
    // `trace`, if given (and while true), logs every BAR access at info:
    //   trace NAME msix-bar write off=0x2c entry 2 control len=4 val=0x00000000
    MsixCapability(PciConfigSpace& config, uint16_t vectors, const Layout& layout, MsixTable::Deliver deliver,
                   MsixTable::Refused on_refused, std::string name, const std::atomic<bool>* trace = nullptr);
    // The same with own_bar(bar, vectors).
    MsixCapability(PciConfigSpace& config, unsigned bar, uint16_t vectors, MsixTable::Deliver deliver,
                   MsixTable::Refused on_refused, std::string name, const std::atomic<bool>* trace = nullptr);

    uint8_t offset() const { return offset_; }  // in configuration space
    const Layout& layout() const { return layout_; }
    unsigned bar() const { return layout_.table_bar; }
    // What a BAR of its own holding table and PBA needs (at least 4 KiB).
    uint32_t bar_size() const { return bar_size_; }
    uint32_t pba_offset() const { return layout_.pba_offset; }
    uint16_t vectors() const { return table_.vectors(); }

    // After a guest write of `length` bytes at `offset` in configuration
    // space: applies Message Control if the write touched it. Returns
    // whether the enable bit changed.
    bool config_written(uint32_t offset, uint32_t length);
    bool enabled() const { return table_.enabled(); }

    MsixTable& table() { return table_; }
    const MsixTable& table() const { return table_; }

    // BusDevice: the table's BAR; `offset` is relative to its base. Bytes
    // of the table, and of the PBA when it shares the BAR, are served; the
    // rest reads 0 and ignores writes (logged once).
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;
    // The PBA where it has a BAR of its own; `offset` from that BAR's base.
    void read_pba_bar(uint64_t offset, std::span<uint8_t> data) const;

    // "msix enabled=yes function_mask=no" and one line per vector: its
    // message, mask and pending bits. Lines end in '\n'.
    std::string state_lines() const;

private:
    uint16_t message_control() const;
    void trace_access(const char* direction, uint64_t offset, std::span<const uint8_t> data) const;

    PciConfigSpace& config_;
    const Layout layout_;
    const std::string name_;
    MsixTable table_;
    const uint32_t bar_size_;
    const std::atomic<bool>* const trace_;
    uint8_t offset_ = 0;
    std::atomic<bool> stray_write_logged_{false};
};

}  // namespace minikvm
