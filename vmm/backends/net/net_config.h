#pragma once
// One --net option, as parsed (vmm/cli) and before anything is opened
// (TapDevice opens the tap, VirtioNet serves it).

#include <optional>
#include <string>

#include "vmm/backends/net/mac_address.h"

namespace minikvm {

struct NetConfig {
    std::string tap;                // interface name, 1..15 characters
    std::optional<MacAddress> mac;  // none: a random one, chosen when the machine is built
};

}  // namespace minikvm
