#include "devices/msi_capability.h"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "devices/msix_table.h"

namespace minikvm {

namespace {

constexpr uint16_t kCapableShift = 1;
constexpr uint16_t kEnabledShift = 4;
constexpr uint16_t kCountMask = 0x7;

// Offsets from the capability, by shape.
uint32_t data_at(bool address64) { return address64 ? 0x0c : 0x08; }
uint32_t mask_at(bool address64) { return address64 ? 0x10 : 0x0c; }

}  // namespace

uint8_t MsiCapability::length(bool address64, bool per_vector_mask) {
    return static_cast<uint8_t>(per_vector_mask ? mask_at(address64) + 8 : data_at(address64) + 2);
}

MsiCapability::MsiCapability(PciConfigSpace& config, uint8_t offset, uint8_t log2_vectors, bool address64,
                             bool per_vector_mask)
    : config_(config),
      offset_(offset),
      log2_capable_(log2_vectors),
      address64_(address64),
      per_vector_mask_(per_vector_mask) {
    if (log2_vectors > 5) throw std::invalid_argument("MSI: at most 32 vectors");
    const size_t body_bytes = length(address64, per_vector_mask) - 2u;
    std::vector<uint8_t> body(body_bytes, 0), writable(body_bytes, 0);
    const uint16_t control = static_cast<uint16_t>(log2_vectors << kCapableShift | (address64 ? kControl64Bit : 0) |
                                                   (per_vector_mask ? kControlPerVectorMask : 0));
    body[0] = static_cast<uint8_t>(control);
    body[1] = static_cast<uint8_t>(control >> 8);
    writable[0] = static_cast<uint8_t>(kControlEnable | kCountMask << kEnabledShift);
    // Offsets in `body` are 2 less than in the capability.
    writable[2] = 0xfc;  // the address is dword-aligned
    std::fill_n(writable.begin() + 3, 3, 0xff);
    if (address64) std::fill_n(writable.begin() + 6, 4, 0xff);
    std::fill_n(writable.begin() + data_at(address64) - 2, 2, 0xff);
    if (per_vector_mask) {
        const uint32_t mask_bits = log2_vectors == 5 ? 0xffff'ffffu : (1u << (1u << log2_vectors)) - 1u;
        for (unsigned i = 0; i < 4; ++i)
            writable[mask_at(address64) - 2 + i] = static_cast<uint8_t>(mask_bits >> (8 * i));
    }
    config_.add_capability_at(offset, kCapabilityId, body, writable);
}

uint16_t MsiCapability::control() const {
    std::array<uint8_t, 2> bytes{};
    config_.read(offset_ + 2u, bytes);
    return static_cast<uint16_t>(bytes[0] | bytes[1] << 8);
}

uint32_t MsiCapability::read32(uint32_t at) const {
    std::array<uint8_t, 4> bytes{};
    config_.read(offset_ + at, bytes);
    return uint32_t{bytes[0]} | uint32_t{bytes[1]} << 8 | uint32_t{bytes[2]} << 16 | uint32_t{bytes[3]} << 24;
}

bool MsiCapability::config_written(uint32_t offset, uint32_t length) {
    if (offset + uint64_t{length} <= offset_ + 2u || offset >= offset_ + 4u) return false;
    const uint16_t now = control();
    const uint16_t relevant = kControlEnable | kCountMask << kEnabledShift;
    const bool changed = (now & relevant) != (last_control_ & relevant);
    last_control_ = now;
    return changed;
}

bool MsiCapability::enabled() const { return (control() & kControlEnable) != 0; }

uint16_t MsiCapability::vectors() const {
    const uint16_t value = control();
    if (!(value & kControlEnable)) return 0;
    // A count above what is capable is the driver's mistake; the function
    // behaves as if it asked for what it has.
    const uint16_t log2 = std::min<uint16_t>((value >> kEnabledShift) & kCountMask, log2_capable_);
    return static_cast<uint16_t>(1u << log2);
}

std::optional<MsiMessage> MsiCapability::deliverable_message(uint16_t vector) const {
    if (vector >= vectors()) return std::nullopt;
    if (!(config_.command() & PciConfigSpace::kCommandBusMaster)) return std::nullopt;
    if (per_vector_mask_ && (read32(mask_at(address64_)) >> vector & 1)) return std::nullopt;
    MsiMessage message;
    message.address = read32(4);
    if (address64_) message.address |= uint64_t{read32(8)} << 32;
    const uint32_t data = read32(data_at(address64_)) & 0xffff;
    // Vector i replaces the low log2(vectors) bits of the data with i.
    message.data = (data & ~(uint32_t{vectors()} - 1u)) | vector;
    if (!MsixTable::valid_message(message)) return std::nullopt;
    return message;
}

std::string MsiCapability::state_lines() const {
    uint64_t address = read32(4);
    if (address64_) address |= uint64_t{read32(8)} << 32;
    return fmt::format("msi enabled={} vectors={} addr={:#x} data={:#x} mask={:#x}\n", enabled() ? "yes" : "no",
                       vectors(), address, read32(data_at(address64_)) & 0xffff,
                       per_vector_mask_ ? read32(mask_at(address64_)) : 0u);
}

}  // namespace minikvm
