#pragma once
// Every kind of virtio device minikvm can give a guest, as data: the option
// that asks for it, how many the configuration wants, and how to build one.
// The machine creates them in table order (so PCI slots follow it), gives
// each a transport, and keeps them in one list; the CLI derives the slot
// check from the same table. Adding a device: its file pair under virtio/,
// one entry in virtio_registry.cpp, its option in cli.cpp.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "virtio/virtio_device.h"
#include "vmm/app/machine_config.h"
#include "vmm/core/event_sources.h"

namespace minikvm {

// What the machine lends the devices it creates.
struct VirtioDeviceContext {
    EventSources& events;
    // Where a console device's output goes (the terminal, the console log,
    // the verdict watcher).
    std::function<void(std::span<const uint8_t>)> console_output;
    // Where the second console's output goes (--exec: the command's stderr).
    std::function<void(std::span<const uint8_t>)> console_error_output;
};

struct VirtioDeviceEntry {
    // Instances are named prefix + index: "virtio-blk0", "virtio-blk1"...
    std::string_view prefix;
    // The option that asks for it, as the slot-check message names it:
    // "--disk"; and for a repeatable one, what its instances are ("disks").
    std::string_view option;
    std::string_view plural;  // empty: at most one
    size_t (*count)(const MachineConfig& config);
    // Builds instance `index`. May throw VmmError for what the user named
    // (exit 6: a disk or tap that cannot be opened).
    std::unique_ptr<VirtioDevice> (*create)(const MachineConfig& config, size_t index, const std::string& name,
                                            VirtioDeviceContext& context);
};

std::span<const VirtioDeviceEntry> virtio_device_registry();

struct NamedVirtioDevice {
    std::string name;
    std::unique_ptr<VirtioDevice> device;
};

// Every device `config` asks for, in registry order.
std::vector<NamedVirtioDevice> create_virtio_devices(const MachineConfig& config, VirtioDeviceContext& context);

// An error message when `config` asks for more virtio devices than `slots`
// PCI slots hold, e.g. "--disk given 9 times: at most 7 disks fit next to
// --console virtio"; empty when they fit.
std::string virtio_slot_problem(const MachineConfig& config, size_t slots);

}  // namespace minikvm
