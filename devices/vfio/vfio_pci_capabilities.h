#pragma once
// Which of an assigned device's PCI capabilities the guest sees, and how,
// from the device's own configuration space (the first 256 bytes):
// - MSI-X and MSI: emulated by minikvm at the hardware's offset
//   (MsixCapability, MsiCapability): the guest's messages never reach the
//   device, VFIO programs the real ones;
// - power management and PCI Express: copies of the hardware's, read-only
//   (the guest must not move the device between power states or start a
//   function-level reset behind VFIO's back; the copies say so: no FLR
//   capability, and No_Soft_Reset, so Linux does not try to reset the
//   device through them). A PCI Express endpoint is
//   shown as a Root Complex Integrated Endpoint without a link, since it
//   sits on the root bus with no port above it, as QEMU does on q35;
// - everything else (vendor-specific, ...): left out of the list. Its
//   bytes still read and write through VFIO, which guards what matters.
// Pure: the walk is bounded and every offset checked, whatever the bytes.

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace minikvm {

struct VfioPciCapability {
    enum class Treatment { Emulated, ReadOnlyCopy, Hidden };
    uint8_t offset = 0;
    uint8_t id = 0;
    uint8_t length = 0;  // bytes from `offset` (0 for hidden ones: unknown)
    Treatment treatment = Treatment::Hidden;
};

inline constexpr uint8_t kPciCapabilityPowerManagement = 0x01;
inline constexpr uint8_t kPciCapabilityMsi = 0x05;
inline constexpr uint8_t kPciCapabilityExpress = 0x10;
inline constexpr uint8_t kPciCapabilityMsix = 0x11;

// The capability list of `config`, in list order; a loop, an offset below
// 0x40 or more than 48 entries ends it.
std::vector<VfioPciCapability> walk_pci_capabilities(std::span<const uint8_t, 256> config);

// The body (after ID and next pointer) the guest sees for a read-only copy:
// the hardware's bytes, a PCI Express endpoint made an integrated one.
std::vector<uint8_t> guest_capability_body(std::span<const uint8_t, 256> config, const VfioPciCapability& capability);

// "MSI-X" and the like, for traces and logs.
const char* pci_capability_name(uint8_t id);

}  // namespace minikvm
