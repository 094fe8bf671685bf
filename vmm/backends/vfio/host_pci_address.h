#pragma once
// Which host PCI function a --vfio-pci option names: "[DOMAIN:]BUS:DEV.FN"
// in hex, as lspci prints it ("04:00.0", "0000:04:00.0"), or the device's
// sysfs directory ("/sys/bus/pci/devices/0000:04:00.0", or its
// /sys/devices/... path). Pure parsing, no filesystem access.

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace minikvm {

struct HostPciAddress {
    uint16_t domain = 0;
    uint8_t bus = 0;
    uint8_t device = 0;    // 0-31
    uint8_t function = 0;  // 0-7

    auto operator<=>(const HostPciAddress&) const = default;
    // "0000:04:00.0": the name of its sysfs directory and VFIO's device name.
    std::string to_string() const;
};

// nullopt with `error` set (what is wrong with `text`, without the option's
// name) when `text` names no PCI function.
std::optional<HostPciAddress> parse_host_pci_address(std::string_view text, std::string& error);

}  // namespace minikvm
