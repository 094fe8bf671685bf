#pragma once
// An MSI capability (PCI Local Bus 3.0 section 6.8.1) in configuration
// space: one message (address and data) for up to 32 vectors, vector i
// sending the data with its low bits replaced by i. The shape is the
// owner's to choose, so an assigned device keeps its hardware's:
//
//   ID 0x05 | next | Message Control | Address [| Upper Address] | Data
//   [| reserved | Mask Bits | Pending Bits]
//   Message Control: bit 0 enable, 3:1 vectors capable (log2, read-only),
//   6:4 vectors enabled (log2), bit 7 64-bit (read-only), bit 8 per-vector
//   masking (read-only)
//
// The guest writes enable, the vector count, the message and the mask
// bits; the owner calls config_written() after every configuration write
// and asks deliverable_message() where a vector goes now. Pending bits
// read 0: a vector signalled while masked is held by the owner and
// delivered on unmask, and no driver reads them. Read-only otherwise;
// thread-safe through the configuration space's own lock.

#include <cstdint>
#include <optional>
#include <string>

#include "devices/pci_config_space.h"
#include "vmm/core/gsi_routing.h"

namespace minikvm {

class MsiCapability {
public:
    static constexpr uint8_t kCapabilityId = 0x05;
    static constexpr uint16_t kControlEnable = 0x0001;
    static constexpr uint16_t kControl64Bit = 0x0080;
    static constexpr uint16_t kControlPerVectorMask = 0x0100;

    // Bytes the capability takes with these features (10 to 24).
    static uint8_t length(bool address64, bool per_vector_mask);

    // Adds the capability at `offset` of `config` (which must outlive
    // this): 1 << `log2_vectors` vectors capable (0-5). Throws like
    // PciConfigSpace::add_capability_at, or std::invalid_argument for more
    // than 32 vectors.
    MsiCapability(PciConfigSpace& config, uint8_t offset, uint8_t log2_vectors, bool address64, bool per_vector_mask);

    uint8_t offset() const { return offset_; }
    // After a guest write of `length` bytes at `offset`: whether the
    // enable bit or the number of vectors enabled changed.
    bool config_written(uint32_t offset, uint32_t length);
    bool enabled() const;
    // Vectors the driver enabled (1 << Multiple Message Enable, at most
    // what is capable); 0 while MSI is off.
    uint16_t vectors() const;
    // Where `vector` goes now, or nullopt: MSI off, past the vectors
    // enabled, masked, bus mastering off, or not an interrupt message.
    std::optional<MsiMessage> deliverable_message(uint16_t vector) const;
    // "msi enabled=yes vectors=4 addr=0xfee00000 data=0x4041 mask=0x0" + '\n'.
    std::string state_lines() const;

private:
    uint16_t control() const;
    uint32_t read32(uint32_t at) const;

    PciConfigSpace& config_;
    const uint8_t offset_;
    const uint8_t log2_capable_;
    const bool address64_;
    const bool per_vector_mask_;
    uint16_t last_control_ = 0;
};

}  // namespace minikvm
