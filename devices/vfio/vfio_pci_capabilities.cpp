#include "devices/vfio/vfio_pci_capabilities.h"

#include "devices/msi_capability.h"

#include <algorithm>

namespace minikvm {

namespace {

constexpr uint32_t kStatus = 0x06;
constexpr uint8_t kStatusCapabilities = 0x10;
constexpr uint32_t kCapabilitiesPointer = 0x34;
constexpr uint32_t kFirstCapability = 0x40;
constexpr size_t kMaxCapabilities = 48;  // (256 - 64) / 4: more means a loop

// PCI Express capability registers (offsets from the capability).
constexpr uint32_t kExpressFlags = 0x02;
constexpr uint32_t kExpressLinkCapabilities = 0x0c;
constexpr uint32_t kExpressLinkControl = 0x10;  // and Link Status at 0x12
constexpr uint32_t kExpressLinkCapabilities2 = 0x2c;
constexpr uint32_t kExpressLinkControl2 = 0x30;  // and Link Status 2 at 0x32
constexpr uint8_t kExpressTypeEndpoint = 0x0;
constexpr uint8_t kExpressTypeLegacyEndpoint = 0x1;
constexpr uint8_t kExpressTypeIntegratedEndpoint = 0x9;
constexpr uint8_t kExpressSlotImplemented = 0x01;  // bit 8 of the flags: bit 0 of their high byte
constexpr uint32_t kExpressDeviceCapabilities = 0x04;
constexpr uint8_t kExpressFlrCapable = 0x10;  // bit 28: bit 4 of the register's top byte
// Power management: PMCSR's No_Soft_Reset (bit 3).
constexpr uint32_t kPmControlStatus = 0x04;
constexpr uint8_t kPmNoSoftReset = 0x08;

uint8_t length_of(std::span<const uint8_t, 256> config, uint8_t offset, uint8_t id) {
    switch (id) {
        case kPciCapabilityMsix: return 12;
        case kPciCapabilityPowerManagement: return 8;
        case kPciCapabilityMsi: {
            const uint8_t control_high = config[offset + 3u];
            return MsiCapability::length((config[offset + 2u] & 0x80) != 0, (control_high & 0x01) != 0);
        }
        case kPciCapabilityExpress: return (config[offset + kExpressFlags] & 0x0f) >= 2 ? 0x3c : 0x24;
        default: return 0;
    }
}

}  // namespace

std::vector<VfioPciCapability> walk_pci_capabilities(std::span<const uint8_t, 256> config) {
    std::vector<VfioPciCapability> found;
    if (!(config[kStatus] & kStatusCapabilities)) return found;
    std::array<bool, 256> seen{};
    uint8_t offset = config[kCapabilitiesPointer] & 0xfc;
    while (offset >= kFirstCapability && !seen[offset] && found.size() < kMaxCapabilities) {
        seen[offset] = true;
        VfioPciCapability capability;
        capability.offset = offset;
        capability.id = config[offset];
        const uint8_t length = length_of(config, offset, capability.id);
        // A capability that would run past the 256 bytes is not what it says.
        if (length != 0 && offset + length <= 256) {
            capability.length = length;
            const bool emulated = capability.id == kPciCapabilityMsix || capability.id == kPciCapabilityMsi;
            capability.treatment =
                emulated ? VfioPciCapability::Treatment::Emulated : VfioPciCapability::Treatment::ReadOnlyCopy;
        }
        found.push_back(capability);
        offset = config[offset + 1u] & 0xfc;
    }
    return found;
}

std::vector<uint8_t> guest_capability_body(std::span<const uint8_t, 256> config, const VfioPciCapability& capability) {
    if (capability.length < 2 || capability.offset + capability.length > 256) return {};
    std::vector<uint8_t> body(config.begin() + capability.offset + 2, config.begin() + capability.offset + capability.length);
    // Offsets in `body` are 2 less than in the capability. The copies are
    // read-only, so the guest must not believe it can reset the function
    // through them: no FLR, and a D3hot->D0 cycle that resets nothing
    // (which is true: the device never leaves D0).
    if (capability.id == kPciCapabilityPowerManagement) body[kPmControlStatus - 2] |= kPmNoSoftReset;
    if (capability.id == kPciCapabilityExpress) {
        body[kExpressDeviceCapabilities - 2 + 3] = static_cast<uint8_t>(body[kExpressDeviceCapabilities - 2 + 3] & ~kExpressFlrCapable);
        auto clear = [&](uint32_t at, uint32_t bytes) {
            if (at >= 2 && at - 2 + bytes <= body.size()) std::fill_n(body.begin() + (at - 2), bytes, 0);
        };
        const uint8_t type = body[kExpressFlags - 2] >> 4;
        if (type == kExpressTypeEndpoint || type == kExpressTypeLegacyEndpoint) {
            body[kExpressFlags - 2] = static_cast<uint8_t>((body[kExpressFlags - 2] & 0x0f) |
                                                           kExpressTypeIntegratedEndpoint << 4);
            body[kExpressFlags - 1] = static_cast<uint8_t>(body[kExpressFlags - 1] & ~kExpressSlotImplemented);
            clear(kExpressLinkCapabilities, 4);
            clear(kExpressLinkControl, 4);
            clear(kExpressLinkCapabilities2, 4);
            clear(kExpressLinkControl2, 4);
        }
    }
    return body;
}

const char* pci_capability_name(uint8_t id) {
    switch (id) {
        case kPciCapabilityPowerManagement: return "power-management";
        case kPciCapabilityMsi: return "MSI";
        case kPciCapabilityExpress: return "PCI-Express";
        case kPciCapabilityMsix: return "MSI-X";
        case 0x09: return "vendor-specific";
        case 0x12: return "SATA";
        case 0x13: return "advanced-features";
        default: return "other";
    }
}

}  // namespace minikvm
