#include "vmm/app/virtio_registry.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <array>

#include "virtio/virtio_9p.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_rng.h"
#include "vmm/app/terminal.h"
#include "vmm/backends/block/disk_image.h"
#include "vmm/backends/net/tap_device.h"
#include "vmm/backends/net/user_network.h"
#include "vmm/backends/p9/p9_server.h"

namespace minikvm {

namespace {

std::unique_ptr<VirtioDevice> create_console(const MachineConfig&, size_t index, const std::string& name,
                                             VirtioDeviceContext& context) {
    // The second is --exec's: the command's stderr (the guest's hvc1).
    if (index == 1)
        return std::make_unique<VirtioConsole>(name, context.console_error_output, std::nullopt, &context.events);
    return std::make_unique<VirtioConsole>(name, context.console_output, stdout_terminal_size(), &context.events);
}

std::unique_ptr<VirtioDevice> create_blk(const MachineConfig& config, size_t index, const std::string& name,
                                         VirtioDeviceContext& context) {
    const DiskConfig& disk = config.disks[index];
    return std::make_unique<VirtioBlk>(name, DiskImage::open(disk), disk, context.events);
}

std::unique_ptr<VirtioDevice> create_net(const MachineConfig& config, size_t index, const std::string& name,
                                         VirtioDeviceContext& context) {
    const NetConfig& net = config.nets[index];
    // Chosen once: the guest sees the same address across its reboots.
    const MacAddress mac = net.mac.value_or(MacAddress::random_local());
    std::unique_ptr<NetBackend> backend;
    if (net.backend == NetConfig::Backend::User) {
        backend = UserNetwork::open(net.forwards, context.events);
        spdlog::info("{}: user network (guest {}, host {}), mac {}", name, UserNetwork::kGuestAddress,
                     UserNetwork::kHostAddress, mac.to_string());
    } else {
        auto tap = std::make_unique<TapDevice>(TapDevice::open(net.tap));
        spdlog::info("{}: tap {} ({}), mac {}", name, tap->name(), tap->created() ? "created" : "attached",
                     mac.to_string());
        backend = std::move(tap);
    }
    return std::make_unique<VirtioNet>(name, std::move(backend), mac, context.events);
}

std::unique_ptr<VirtioDevice> create_rng(const MachineConfig&, size_t, const std::string& name, VirtioDeviceContext&) {
    return std::make_unique<VirtioRng>(name);
}

std::unique_ptr<VirtioDevice> create_9p(const MachineConfig& config, size_t index, const std::string& name,
                                        VirtioDeviceContext& context) {
    const ShareConfig& share = config.shares[index];
    auto server = std::make_unique<p9::Server>(
        p9::SharedTree::open(share.path),
        p9::ServerOptions{.read_only = share.read_only, .allow_devices = share.allow_devices}, name);
    return std::make_unique<Virtio9p>(name, share.tag, std::move(server), context.events);
}

// In PCI slot order.
constexpr std::array kRegistry{
    VirtioDeviceEntry{"virtio-console", "--console virtio", "",
                      [](const MachineConfig& c) -> size_t {
                          if (c.console != ConsoleMode::Virtio) return 0;
                          return c.exec ? 2 : 1;  // --exec: stdout and stderr
                      },
                      create_console},
    VirtioDeviceEntry{"virtio-blk", "--disk", "disks", [](const MachineConfig& c) { return c.disks.size(); },
                      create_blk},
    VirtioDeviceEntry{"virtio-net", "--net", "cards", [](const MachineConfig& c) { return c.nets.size(); },
                      create_net},
    VirtioDeviceEntry{"virtio-rng", "--rng", "", [](const MachineConfig& c) -> size_t { return c.rng ? 1 : 0; },
                      create_rng},
    VirtioDeviceEntry{"virtio-9p", "--share", "shares", [](const MachineConfig& c) { return c.shares.size(); },
                      create_9p},
};

std::string join_and(const std::vector<std::string_view>& words) {
    std::string out;
    for (size_t i = 0; i < words.size(); ++i) {
        if (i > 0) out += i + 1 == words.size() ? " and " : ", ";
        out += words[i];
    }
    return out;
}

}  // namespace

std::span<const VirtioDeviceEntry> virtio_device_registry() { return kRegistry; }

std::vector<NamedVirtioDevice> create_virtio_devices(const MachineConfig& config, VirtioDeviceContext& context) {
    std::vector<NamedVirtioDevice> devices;
    for (const VirtioDeviceEntry& entry : kRegistry) {
        const size_t count = entry.count(config);
        for (size_t i = 0; i < count; ++i) {
            std::string name = fmt::format("{}{}", entry.prefix, i);
            auto device = entry.create(config, i, name, context);
            devices.push_back({std::move(name), std::move(device)});
        }
    }
    return devices;
}

std::string virtio_slot_problem(const MachineConfig& config, size_t slots) {
    size_t total = 0;
    size_t repeated_total = 0;
    std::vector<std::string_view> repeated;
    std::string_view plural;
    std::vector<std::string_view> single;
    for (const VirtioDeviceEntry& entry : kRegistry) {
        const size_t count = entry.count(config);
        if (count == 0) continue;
        total += count;
        if (entry.plural.empty()) {
            single.push_back(entry.option);
        } else {
            repeated.push_back(entry.option);
            repeated_total += count;
            plural = entry.plural;
        }
    }
    if (total <= slots) return {};
    const size_t fit = slots > single.size() ? slots - single.size() : 0;
    const std::string next_to = single.empty() ? "" : " next to " + join_and(single);
    if (repeated.size() == 1)
        return fmt::format("{} given {} times: at most {} {} fit{}", repeated[0], repeated_total, fit, plural, next_to);
    return fmt::format("{} given {} times together: at most {} devices fit{}", join_and(repeated), repeated_total, fit,
                       next_to);
}

}  // namespace minikvm
