#include "vmm/backends/net/mac_address.h"

#include <fmt/format.h>

#include <random>

namespace minikvm {

namespace {

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::optional<MacAddress> MacAddress::parse(std::string_view text) {
    // "xx:xx:xx:xx:xx:xx": 17 characters, separators at 2, 5, 8...
    if (text.size() != 17) return std::nullopt;
    const char separator = text[2];
    if (separator != ':' && separator != '-') return std::nullopt;
    MacAddress mac;
    for (size_t i = 0; i < 6; ++i) {
        const size_t at = 3 * i;
        if (i > 0 && text[at - 1] != separator) return std::nullopt;
        const int high = hex_digit(text[at]);
        const int low = hex_digit(text[at + 1]);
        if (high < 0 || low < 0) return std::nullopt;
        mac.bytes[i] = static_cast<uint8_t>(high << 4 | low);
    }
    return mac;
}

MacAddress MacAddress::random_local() {
    std::random_device random;
    MacAddress mac;
    for (uint8_t& byte : mac.bytes) byte = static_cast<uint8_t>(random());
    mac.bytes[0] = static_cast<uint8_t>((mac.bytes[0] & 0xfe) | 0x02);
    return mac;
}

std::string MacAddress::to_string() const {
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", bytes[0], bytes[1], bytes[2], bytes[3], bytes[4],
                       bytes[5]);
}

}  // namespace minikvm
