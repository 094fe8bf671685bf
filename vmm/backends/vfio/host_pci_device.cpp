#include "vmm/backends/vfio/host_pci_device.h"

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include <fmt/format.h>

#include "vmm/core/error.h"

namespace minikvm {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// The name a symlink points at, "" when there is no such link.
std::string link_name(const fs::path& link) {
    std::error_code error;
    const fs::path target = fs::read_symlink(link, error);
    return error ? std::string() : target.filename().string();
}

uint16_t read_id(const fs::path& path) {
    try {
        return static_cast<uint16_t>(std::stoul(read_text(path), nullptr, 16));
    } catch (const std::exception&) {
        return 0;
    }
}

}  // namespace

std::vector<IovaRegion> parse_reserved_regions(std::string_view text) {
    std::vector<IovaRegion> regions;
    std::istringstream in{std::string(text)};
    for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        std::string start, end, type;
        if (!(fields >> start >> end >> type)) continue;
        try {
            size_t used_start = 0, used_end = 0;
            IovaRegion region{std::stoull(start, &used_start, 16), std::stoull(end, &used_end, 16), type};
            if (used_start != start.size() || used_end != end.size() || region.end < region.start) continue;
            regions.push_back(region);
        } catch (const std::exception&) {
            continue;
        }
    }
    return regions;
}

std::string HostPciDevice::group_path() const { return fmt::format("/dev/vfio/{}", iommu_group); }

bool vfio_viable_driver(std::string_view driver) {
    // No driver, a VFIO driver, or one VFIO itself accepts in a group
    // (pci-stub holds a device idle; pcieport drives a bridge, not the device).
    return driver.empty() || driver == "vfio-pci" || driver == "pci-stub" || driver == "pcieport";
}

HostPciDevice probe_host_pci_device(const std::string& sysfs_root, const HostPciAddress& address,
                                    const std::string& option) {
    const std::string name = address.to_string();
    const fs::path devices = fs::path(sysfs_root) / "bus/pci/devices";
    const fs::path path = devices / name;
    std::error_code error;
    if (!fs::exists(path, error))
        fail(ExitCode::BadDevice, "{}: no PCI device {} on this host ({} does not exist; lspci -D lists them)",
             option, name, path.string());

    HostPciDevice device;
    device.address = address;
    device.sysfs_path = path.string();
    device.vendor_id = read_id(path / "vendor");
    device.device_id = read_id(path / "device");

    const std::string driver = link_name(path / "driver");
    if (driver != "vfio-pci") {
        const fs::path sys = fs::path(sysfs_root);
        const std::string load =
            fs::exists(sys / "bus/pci/drivers/vfio-pci", error) ? "" : "modprobe vfio-pci && ";
        const std::string unbind =
            driver.empty() ? "" : fmt::format("echo {} > {} && ", name, (sys / "bus/pci/drivers" / driver / "unbind").string());
        fail(ExitCode::BadDevice,
             "{}: {} ({:04x}:{:04x}) is {}, not to vfio-pci; bind it with: {}echo vfio-pci > {} && {}echo {} > {}",
             option, name, device.vendor_id, device.device_id,
             driver.empty() ? std::string("bound to no driver") : "bound to " + driver, load,
             (path / "driver_override").string(), unbind, name, (sys / "bus/pci/drivers_probe").string());
    }

    const std::string group = link_name(path / "iommu_group");
    if (group.empty())
        fail(ExitCode::BadDevice,
             "{}: {} has no IOMMU group: the host's IOMMU is off (boot the host with intel_iommu=on on Intel; "
             "AMD's is on unless amd_iommu=off) or absent",
             option, name);
    try {
        device.iommu_group = static_cast<unsigned>(std::stoul(group));
    } catch (const std::exception&) {
        fail(ExitCode::BadDevice, "{}: {}'s IOMMU group '{}' is not a number", option, name, group);
    }

    // Viable: every other function of the group bound to nothing or to a
    // driver VFIO accepts. A device another driver owns could DMA anywhere
    // the group's IOMMU mappings allow.
    const fs::path members = fs::path(sysfs_root) / "kernel/iommu_groups" / group / "devices";
    std::vector<std::string> blockers;
    for (const auto& entry : fs::directory_iterator(members, error)) {
        const std::string member = entry.path().filename().string();
        if (member == name) continue;
        const std::string member_driver = link_name(devices / member / "driver");
        if (!vfio_viable_driver(member_driver)) blockers.push_back(fmt::format("{} (bound to {})", member, member_driver));
    }
    std::sort(blockers.begin(), blockers.end());
    if (!blockers.empty()) {
        std::string list;
        for (const std::string& blocker : blockers) list += (list.empty() ? "" : ", ") + blocker;
        fail(ExitCode::BadDevice,
             "{}: IOMMU group {} of {} is not viable: {} {} in it too; bind every device of the group to vfio-pci "
             "(or unbind it)",
             option, device.iommu_group, name, list, blockers.size() == 1 ? "is" : "are");
    }
    device.reserved_regions =
        parse_reserved_regions(read_text(fs::path(sysfs_root) / "kernel/iommu_groups" / group / "reserved_regions"));
    return device;
}

}  // namespace minikvm
