#include "devices/msix_capability.h"

#include <algorithm>
#include <array>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace minikvm {

namespace {

uint32_t table_bytes(uint16_t vectors) { return uint32_t{vectors} * MsixTable::kEntryBytes; }
uint32_t pba_bytes(uint16_t vectors) { return ((vectors + 63u) / 64u) * 8u; }

uint32_t bar_size_for(const MsixCapability::Layout& layout, uint16_t vectors) {
    const uint64_t end = std::max(uint64_t{layout.table_offset} + table_bytes(vectors),
                                  uint64_t{layout.pba_offset} + pba_bytes(vectors));
    uint64_t size = MsixCapability::kMinBarSize;
    while (size < end) size <<= 1;
    return static_cast<uint32_t>(std::min<uint64_t>(size, 0x8000'0000));
}

const MsixCapability::Layout& checked(const MsixCapability::Layout& layout, uint16_t vectors) {
    const bool same_bar = layout.table_bar == layout.pba_bar;
    const bool overlap = same_bar && layout.table_offset < uint64_t{layout.pba_offset} + pba_bytes(vectors) &&
                         layout.pba_offset < uint64_t{layout.table_offset} + table_bytes(vectors);
    if (layout.table_bar >= PciConfigSpace::kBarCount || layout.pba_bar >= PciConfigSpace::kBarCount ||
        layout.table_offset % 8 != 0 || layout.pba_offset % 8 != 0 || overlap)
        throw std::invalid_argument(fmt::format("MSI-X: bad layout (table BAR{}+{:#x}, PBA BAR{}+{:#x})",
                                                layout.table_bar, layout.table_offset, layout.pba_bar,
                                                layout.pba_offset));
    return layout;
}

}  // namespace

MsixCapability::Layout MsixCapability::own_bar(unsigned bar, uint16_t vectors) {
    const uint32_t pba = std::max(kDefaultPbaOffset, (table_bytes(vectors) + 7u) & ~7u);
    return Layout{bar, 0, bar, pba, std::nullopt};
}

MsixCapability::MsixCapability(PciConfigSpace& config, unsigned bar, uint16_t vectors, MsixTable::Deliver deliver,
                               MsixTable::Refused on_refused, std::string name, const std::atomic<bool>* trace)
    : MsixCapability(config, vectors, own_bar(bar, vectors), std::move(deliver), std::move(on_refused),
                     std::move(name), trace) {}

MsixCapability::MsixCapability(PciConfigSpace& config, uint16_t vectors, const Layout& layout,
                               MsixTable::Deliver deliver, MsixTable::Refused on_refused, std::string name,
                               const std::atomic<bool>* trace)
    : config_(config),
      layout_(checked(layout, vectors)),
      name_(std::move(name)),
      table_(vectors, std::move(deliver), std::move(on_refused)),
      bar_size_(bar_size_for(layout_, vectors)),
      trace_(trace) {
    // Body after the ID and next pointer: Message Control, Table, PBA.
    const uint16_t control = static_cast<uint16_t>(vectors - 1u);  // table size - 1; both control bits clear
    const uint32_t table = layout_.table_offset | layout_.table_bar;  // BIR in bits 2:0
    const uint32_t pba = layout_.pba_offset | layout_.pba_bar;
    std::array<uint8_t, 10> body{};
    std::array<uint8_t, 10> writable{};
    body[0] = static_cast<uint8_t>(control);
    body[1] = static_cast<uint8_t>(control >> 8);
    for (unsigned i = 0; i < 4; ++i) {
        body[2 + i] = static_cast<uint8_t>(table >> (8 * i));
        body[6 + i] = static_cast<uint8_t>(pba >> (8 * i));
    }
    writable[1] = static_cast<uint8_t>((kControlEnable | kControlFunctionMask) >> 8);
    if (layout_.capability_offset) {
        config_.add_capability_at(*layout_.capability_offset, kCapabilityId, body, writable);
        offset_ = *layout_.capability_offset;
    } else {
        offset_ = config_.add_capability(kCapabilityId, body, writable);
    }
}

uint16_t MsixCapability::message_control() const {
    std::array<uint8_t, 2> bytes{};
    config_.read(offset_ + 2u, bytes);
    return static_cast<uint16_t>(bytes[0] | bytes[1] << 8);
}


bool MsixCapability::config_written(uint32_t offset, uint32_t length) {
    const auto touches = [&](uint32_t start, uint32_t bytes) {
        return offset + uint64_t{length} > start && offset < start + bytes;
    };
    if (!touches(offset_ + 2u, 2) && !touches(PciConfigSpace::kCommand, 2)) return false;
    const uint16_t value = message_control();
    const bool was_enabled = table_.enabled();
    const bool enable = (value & kControlEnable) != 0;
    // An MSI is a memory write: with Bus Master Enable clear the function
    // may send none. Vectors then go pending, as under the function mask,
    // and are delivered once bus mastering is back.
    const bool bus_master = (config_.command() & PciConfigSpace::kCommandBusMaster) != 0;
    table_.set_control(enable, (value & kControlFunctionMask) != 0 || !bus_master);
    return enable != was_enabled;
}

void MsixCapability::trace_access(const char* direction, uint64_t offset, std::span<const uint8_t> data) const {
    static constexpr const char* kFields[] = {"address", "address", "address", "address",
                                              "upper-address", "upper-address", "upper-address", "upper-address",
                                              "data", "data", "data", "data",
                                              "control", "control", "control", "control"};
    uint64_t value = 0;
    for (size_t i = 0; i < data.size() && i < sizeof value; ++i) value |= uint64_t{data[i]} << (8 * i);
    const uint64_t in_table = offset - layout_.table_offset;  // wraps when below: then not in the table
    const bool pba = layout_.pba_bar == layout_.table_bar && offset >= layout_.pba_offset &&
                     offset < uint64_t{layout_.pba_offset} + table_.pba_bytes();
    const std::string what = offset >= layout_.table_offset && in_table < table_.table_bytes()
                                 ? fmt::format("entry {} {}", in_table / MsixTable::kEntryBytes,
                                               kFields[in_table % MsixTable::kEntryBytes])
                             : pba ? std::string("pba")
                                   : std::string("unused");
    spdlog::info("trace {} msix-bar {} off={:#x} {} len={} val={:#0{}x}", name_, direction, offset, what, data.size(),
                 value, 2 + 2 * data.size());
}

void MsixCapability::read(uint64_t offset, std::span<uint8_t> data) {
    // Byte by byte: the table's, the PBA's (when it shares the BAR), or 0.
    const uint64_t table_start = layout_.table_offset, table_end = table_start + table_.table_bytes();
    const bool pba_here = layout_.pba_bar == layout_.table_bar;
    const uint64_t pba_start = layout_.pba_offset, pba_end = pba_start + table_.pba_bytes();
    for (size_t i = 0; i < data.size(); ++i) {
        const uint64_t at = offset + i;
        if (at >= table_start && at < table_end) table_.read_table(at - table_start, data.subspan(i, 1));
        else if (pba_here && at >= pba_start && at < pba_end) table_.read_pba(at - pba_start, data.subspan(i, 1));
        else data[i] = 0;
    }
    if (trace_ != nullptr && trace_->load(std::memory_order_relaxed)) trace_access("read ", offset, data);
}

void MsixCapability::read_pba_bar(uint64_t offset, std::span<uint8_t> data) const {
    const uint64_t start = layout_.pba_offset;
    for (size_t i = 0; i < data.size(); ++i) {
        const uint64_t at = offset + i;
        if (at >= start && at < start + table_.pba_bytes()) table_.read_pba(at - start, data.subspan(i, 1));
        else data[i] = 0;
    }
}

void MsixCapability::write(uint64_t offset, std::span<const uint8_t> data) {
    // Before the effects, so a delivery the unmask causes follows it.
    if (trace_ != nullptr && trace_->load(std::memory_order_relaxed)) trace_access("write", offset, data);
    const uint64_t table_start = layout_.table_offset, table_end = table_start + table_.table_bytes();
    if (offset >= table_start && offset < table_end) {
        // Whole-access writes keep the table's one-lock merge (and one delivery on unmask).
        const size_t n = std::min<uint64_t>(data.size(), table_end - offset);
        table_.write_table(offset - table_start, data.first(n));
        if (n == data.size()) return;
    }
    if (!stray_write_logged_.exchange(true))
        spdlog::warn("{}: write of {} bytes at MSI-X BAR offset {:#x}, outside the vector table (the PBA is "
                     "read-only); ignored (logged once)",
                     name_, data.size(), offset);
}

std::string MsixCapability::state_lines() const {
    const uint16_t control = message_control();
    std::string out = fmt::format("msix enabled={} function_mask={} vectors={} refused={}\n",
                                  (control & kControlEnable) ? "yes" : "no",
                                  (control & kControlFunctionMask) ? "yes" : "no", table_.vectors(),
                                  table_.refused_count());
    for (uint16_t vector = 0; vector < table_.vectors(); ++vector) {
        const MsiMessage message = table_.message(vector);
        out += fmt::format("msix vector {} addr={:#x} data={:#x} masked={} pending={}\n", vector, message.address,
                           message.data, table_.masked(vector) ? "yes" : "no",
                           table_.pending(vector) ? "yes" : "no");
    }
    return out;
}

}  // namespace minikvm
