#include "vmm/backends/gdb/gdb_address.h"

#include <arpa/inet.h>
#include <sys/un.h>

#include <charconv>

namespace minikvm::gdb {

namespace {

constexpr const char* kForms = "use tcp:HOST:PORT, tcp::PORT, unix:PATH or a path with a '/'";

bool is_ipv4(const std::string& host) {
    in_addr address{};
    return ::inet_pton(AF_INET, host.c_str(), &address) == 1;
}

bool is_ipv6(const std::string& host) {
    in6_addr address{};
    return ::inet_pton(AF_INET6, host.c_str(), &address) == 1;
}

}  // namespace

std::string GdbAddress::text() const {
    if (kind == Kind::Unix) return "unix:" + path;
    if (host.find(':') != std::string::npos) return "tcp:[" + host + "]:" + std::to_string(port);
    return "tcp:" + host + ":" + std::to_string(port);
}

std::optional<GdbAddress> parse_gdb_address(const std::string& text, std::string& error) {
    GdbAddress address;
    if (text.rfind("tcp:", 0) == 0) {
        const std::string rest = text.substr(4);
        const size_t colon = rest.rfind(':');
        if (colon == std::string::npos) {
            error = std::string("no port: ") + kForms;
            return std::nullopt;
        }
        std::string host = rest.substr(0, colon);
        const std::string port = rest.substr(colon + 1);
        unsigned value = 0;
        auto [end, status] = std::from_chars(port.data(), port.data() + port.size(), value);
        if (port.empty() || status != std::errc() || end != port.data() + port.size() || value > 65535) {
            error = "the port must be a number from 0 to 65535";
            return std::nullopt;
        }
        if (host.empty() || host == "localhost") {
            host = "127.0.0.1";
        } else if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
            host = host.substr(1, host.size() - 2);
            if (!is_ipv6(host)) {
                error = "not an IPv6 address: " + host;
                return std::nullopt;
            }
        } else if (!is_ipv4(host)) {
            error = "the host must be a numeric address (127.0.0.1, [::1]) or localhost";
            return std::nullopt;
        }
        address.host = host;
        address.port = static_cast<uint16_t>(value);
        return address;
    }
    std::string path;
    if (text.rfind("unix:", 0) == 0) path = text.substr(5);
    else if (text.find('/') != std::string::npos) path = text;
    else {
        error = kForms;
        return std::nullopt;
    }
    if (path.empty()) {
        error = "an empty socket path";
        return std::nullopt;
    }
    if (path.size() >= sizeof(sockaddr_un::sun_path)) {
        error = "the socket path is longer than " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes";
        return std::nullopt;
    }
    address.kind = GdbAddress::Kind::Unix;
    address.path = path;
    return address;
}

}  // namespace minikvm::gdb
