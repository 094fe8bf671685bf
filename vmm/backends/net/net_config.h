#pragma once
// One --net option, as parsed (vmm/cli) and before anything is opened
// (TapDevice opens a tap, UserNetwork starts libslirp; VirtioNet serves
// either).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <netinet/in.h>

#include "vmm/backends/net/mac_address.h"

namespace minikvm {

// hostfwd=tcp:HOSTADDR:HOSTPORT-:GUESTPORT (QEMU's spelling): minikvm
// listens on the host and forwards each connection into the guest.
struct HostForward {
    bool udp = false;
    in_addr host_address{};  // default 127.0.0.1
    uint16_t host_port = 0;
    in_addr guest_address{};  // 0: the address the guest gets by DHCP
    uint16_t guest_port = 0;
    std::string text;  // as given, for messages
};

struct NetConfig {
    enum class Backend { Tap, User };
    Backend backend = Backend::Tap;
    std::string tap;                    // Tap: interface name, 1..15 characters
    std::vector<HostForward> forwards;  // User only
    std::optional<MacAddress> mac;      // none: a random one, chosen when the machine is built
};

}  // namespace minikvm
