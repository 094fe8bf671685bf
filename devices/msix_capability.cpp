#include "devices/msix_capability.h"

#include <algorithm>
#include <array>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace minikvm {

namespace {

uint32_t pba_offset_for(uint16_t vectors) {
    const uint32_t table = uint32_t{vectors} * MsixTable::kEntryBytes;
    return std::max(MsixCapability::kDefaultPbaOffset, (table + 7u) & ~7u);
}

uint32_t bar_size_for(uint32_t pba_offset, uint16_t vectors) {
    const uint32_t end = pba_offset + ((vectors + 63u) / 64u) * 8u;
    uint32_t size = MsixCapability::kMinBarSize;
    while (size < end) size <<= 1;
    return size;
}

}  // namespace

MsixCapability::MsixCapability(PciConfigSpace& config, unsigned bar, uint16_t vectors, MsixTable::Deliver deliver,
                               MsixTable::Refused on_refused, std::string name, const std::atomic<bool>* trace)
    : config_(config),
      bar_(bar),
      name_(std::move(name)),
      table_(vectors, std::move(deliver), std::move(on_refused)),
      pba_offset_(pba_offset_for(vectors)),
      bar_size_(bar_size_for(pba_offset_, vectors)),
      trace_(trace) {
    if (bar >= PciConfigSpace::kBarCount) throw std::invalid_argument("MSI-X: BAR index out of range");
    // Body after the ID and next pointer: Message Control, Table, PBA.
    const uint16_t control = static_cast<uint16_t>(vectors - 1u);  // table size - 1; both control bits clear
    const uint32_t table = 0u | bar;                                  // offset 0, BIR in bits 2:0
    const uint32_t pba = pba_offset_ | bar;
    std::array<uint8_t, 10> body{};
    std::array<uint8_t, 10> writable{};
    body[0] = static_cast<uint8_t>(control);
    body[1] = static_cast<uint8_t>(control >> 8);
    for (unsigned i = 0; i < 4; ++i) {
        body[2 + i] = static_cast<uint8_t>(table >> (8 * i));
        body[6 + i] = static_cast<uint8_t>(pba >> (8 * i));
    }
    writable[1] = static_cast<uint8_t>((kControlEnable | kControlFunctionMask) >> 8);
    offset_ = config_.add_capability(kCapabilityId, body, writable);
}

uint16_t MsixCapability::message_control() const {
    std::array<uint8_t, 2> bytes{};
    config_.read(offset_ + 2u, bytes);
    return static_cast<uint16_t>(bytes[0] | bytes[1] << 8);
}

bool MsixCapability::function_masked() const { return (message_control() & kControlFunctionMask) != 0; }

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
    const std::string what = offset < table_.table_bytes()
                                 ? fmt::format("entry {} {}", offset / MsixTable::kEntryBytes,
                                               kFields[offset % MsixTable::kEntryBytes])
                             : offset >= pba_offset_ ? std::string("pba")
                                                     : std::string("unused");
    spdlog::info("trace {} msix-bar {} off={:#x} {} len={} val={:#0{}x}", name_, direction, offset, what, data.size(),
                 value, 2 + 2 * data.size());
}

void MsixCapability::read(uint64_t offset, std::span<uint8_t> data) {
    // Split at the PBA: bytes before it are the table's (zero past its end).
    for (size_t i = 0; i < data.size();) {
        const uint64_t at = offset + i;
        if (at < pba_offset_) {
            const size_t n = std::min<uint64_t>(data.size() - i, pba_offset_ - at);
            table_.read_table(at, data.subspan(i, n));
            i += n;
        } else {
            table_.read_pba(at - pba_offset_, data.subspan(i));
            break;
        }
    }
    if (trace_ != nullptr && trace_->load(std::memory_order_relaxed)) trace_access("read ", offset, data);
}

void MsixCapability::write(uint64_t offset, std::span<const uint8_t> data) {
    // Before the effects, so a delivery the unmask causes follows it.
    if (trace_ != nullptr && trace_->load(std::memory_order_relaxed)) trace_access("write", offset, data);
    const uint64_t table_end = table_.table_bytes();
    if (offset < table_end) {
        const size_t n = std::min<uint64_t>(data.size(), table_end - offset);
        table_.write_table(offset, data.first(n));
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
