#pragma once
// An Ethernet MAC address: parsing ("52:54:00:12:34:56"), printing, and
// the random one a --net without mac= gets.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace minikvm {

struct MacAddress {
    std::array<uint8_t, 6> bytes{};

    // Six two-digit hex bytes separated by ':' (or all by '-'), any case.
    // nullopt when malformed.
    static std::optional<MacAddress> parse(std::string_view text);
    // Random, locally administered (bit 1 of the first byte set) and
    // unicast (bit 0 clear), so it cannot clash with a vendor's address.
    static MacAddress random_local();

    bool multicast() const { return (bytes[0] & 1) != 0; }
    bool zero() const { return bytes == std::array<uint8_t, 6>{}; }
    // Lower-case, colon-separated.
    std::string to_string() const;
    bool operator==(const MacAddress&) const = default;
};

}  // namespace minikvm
