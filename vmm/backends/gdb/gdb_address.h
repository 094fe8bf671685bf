#pragma once
// Where --gdb listens, parsed (pure; nothing is opened):
//   tcp:HOST:PORT   HOST an IPv4 literal, [IPv6 literal] or localhost
//   tcp::PORT       the same on 127.0.0.1: loopback unless a host is given
//   unix:PATH, or any value with a '/' in it: a Unix socket at PATH
// PORT is 1-65535, or 0 for any free port (minikvm logs the one it got).

#include <cstdint>
#include <optional>
#include <string>

namespace minikvm::gdb {

struct GdbAddress {
    enum class Kind : uint8_t { Tcp, Unix };
    Kind kind = Kind::Tcp;
    std::string host;  // a numeric address (Tcp)
    uint16_t port = 0;
    std::string path;  // Unix

    // "tcp:127.0.0.1:1234", "tcp:[::1]:1234" or "unix:PATH".
    std::string text() const;
};

// nullopt and `error` (without the "--gdb VALUE:" prefix) when malformed.
std::optional<GdbAddress> parse_gdb_address(const std::string& text, std::string& error);

}  // namespace minikvm::gdb
