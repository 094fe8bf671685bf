#include "vmm/backends/vfio/host_pci_address.h"

#include <fmt/format.h>

namespace minikvm {

namespace {

// Exactly `digits` hex digits (or 1..digits when `exact` is false) at the
// start of `text`, consumed.
std::optional<unsigned> take_hex(std::string_view& text, size_t max_digits, bool exact) {
    size_t n = 0;
    unsigned value = 0;
    while (n < text.size() && n < max_digits) {
        const char c = text[n];
        unsigned digit = 0;
        if (c >= '0' && c <= '9') digit = static_cast<unsigned>(c - '0');
        else if (c >= 'a' && c <= 'f') digit = static_cast<unsigned>(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') digit = static_cast<unsigned>(c - 'A' + 10);
        else break;
        value = value * 16 + digit;
        ++n;
    }
    if (n == 0 || (exact && n != max_digits)) return std::nullopt;
    text.remove_prefix(n);
    return value;
}

bool take(std::string_view& text, char c) {
    if (text.empty() || text.front() != c) return false;
    text.remove_prefix(1);
    return true;
}

}  // namespace

std::string HostPciAddress::to_string() const {
    return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", domain, bus, device, function);
}

std::optional<HostPciAddress> parse_host_pci_address(std::string_view text, std::string& error) {
    const std::string_view original = text;
    // A sysfs path: its last component is the address, in full form.
    if (text.find('/') != std::string_view::npos) {
        while (!text.empty() && text.back() == '/') text.remove_suffix(1);
        text = text.substr(text.rfind('/') + 1);
    }
    const auto bad = [&](std::string_view why) -> std::optional<HostPciAddress> {
        error = fmt::format("'{}' is not a PCI address ({}); use [DOMAIN:]BUS:DEV.FN as lspci prints it, e.g. "
                            "0000:04:00.0, or /sys/bus/pci/devices/0000:04:00.0",
                            original, why);
        return std::nullopt;
    };
    // Two colons: a domain first.
    const bool with_domain = text.find(':') != text.rfind(':');
    HostPciAddress address;
    if (with_domain) {
        const auto domain = take_hex(text, 4, false);
        if (!domain || !take(text, ':')) return bad("domain: up to 4 hex digits");
        address.domain = static_cast<uint16_t>(*domain);
    }
    const auto bus = take_hex(text, 2, false);
    if (!bus || !take(text, ':')) return bad("bus: 2 hex digits");
    const auto device = take_hex(text, 2, false);
    if (!device || !take(text, '.')) return bad("device: 2 hex digits, then '.'");
    if (*device > 0x1f) return bad("device numbers go up to 1f");
    const auto function = take_hex(text, 1, true);
    if (!function || *function > 7) return bad("function: 0 to 7");
    if (!text.empty()) return bad("trailing characters");
    address.bus = static_cast<uint8_t>(*bus);
    address.device = static_cast<uint8_t>(*device);
    address.function = static_cast<uint8_t>(*function);
    return address;
}

}  // namespace minikvm
