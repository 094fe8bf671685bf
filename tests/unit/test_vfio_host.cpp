// The host side of --vfio-pci that needs no VFIO device: naming the host
// function, and what sysfs says about it (a fake sysfs tree in /tmp), with
// one clear line for every problem a person can fix.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <linux/vfio.h>
#include <sys/resource.h>

#include <cstring>

#include "vmm/backends/vfio/dma_memlock.h"
#include "vmm/backends/vfio/guest_ram_dma.h"
#include "vmm/backends/vfio/host_pci_address.h"
#include "vmm/backends/vfio/host_pci_device.h"
#include "vmm/backends/vfio/vfio_container.h"
#include "vmm/backends/vfio/vfio_group.h"
#include "vmm/core/error.h"

using namespace minikvm;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::optional<HostPciAddress> parse(std::string_view text) {
    std::string error;
    auto address = parse_host_pci_address(text, error);
    if (!address) CHECK_FALSE(error.empty());
    return address;
}

// A sysfs tree with PCI functions, drivers and IOMMU groups, as the kernel
// lays it out (symlinks for driver and iommu_group).
class FakeSysfs {
public:
    FakeSysfs() {
        char name[] = "/tmp/minikvm-sysfs-XXXXXX";
        root_ = ::mkdtemp(name);
        fs::create_directories(root_ / "bus/pci/devices");
        fs::create_directories(root_ / "bus/pci/drivers");
        fs::create_directories(root_ / "kernel/iommu_groups");
    }
    ~FakeSysfs() { fs::remove_all(root_); }
    FakeSysfs(const FakeSysfs&) = delete;
    FakeSysfs& operator=(const FakeSysfs&) = delete;

    std::string root() const { return root_.string(); }

    void add_driver(const std::string& driver) { fs::create_directories(root_ / "bus/pci/drivers" / driver); }

    // A function, bound to `driver` ("" for none), in IOMMU group `group` (-1: none).
    void add_device(const std::string& address, const std::string& driver, int group) {
        const fs::path device = root_ / "devices/pci0000:00" / address;
        fs::create_directories(device);
        std::ofstream(device / "vendor") << "0x1b36\n";
        std::ofstream(device / "device") << "0x0010\n";
        fs::create_directory_symlink(device, root_ / "bus/pci/devices" / address);
        if (!driver.empty()) {
            add_driver(driver);
            fs::create_directory_symlink(root_ / "bus/pci/drivers" / driver, device / "driver");
        }
        if (group >= 0) {
            const fs::path g = root_ / "kernel/iommu_groups" / std::to_string(group);
            fs::create_directories(g / "devices");
            fs::create_directory_symlink(device, g / "devices" / address);
            fs::create_directory_symlink(g, device / "iommu_group");
            std::ofstream(g / "reserved_regions") << "0x00000000fee00000 0x00000000feefffff msi\n";
        }
    }

private:
    fs::path root_;
};

std::string probe_error(const FakeSysfs& sysfs, const std::string& address) {
    try {
        probe_host_pci_device(sysfs.root(), *parse(address), "--vfio-pci " + address);
    } catch (const VmmError& error) {
        CHECK(error.code() == ExitCode::BadDevice);
        return error.what();
    }
    return "";
}

}  // namespace

TEST_CASE("host PCI addresses: lspci's forms and sysfs paths", "[vfio]") {
    CHECK(parse("04:00.0") == HostPciAddress{0, 4, 0, 0});
    CHECK(parse("0000:04:00.0") == HostPciAddress{0, 4, 0, 0});
    CHECK(parse("10:1f.7") == HostPciAddress{0, 0x10, 0x1f, 7});
    CHECK(parse("abcd:Ef:1F.3") == HostPciAddress{0xabcd, 0xef, 0x1f, 3});
    CHECK(parse("/sys/bus/pci/devices/0000:00:04.0") == HostPciAddress{0, 0, 4, 0});
    CHECK(parse("/sys/bus/pci/devices/0000:00:04.0/") == HostPciAddress{0, 0, 4, 0});
    CHECK(parse("/sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.1") == HostPciAddress{0, 1, 0, 1});
    CHECK(parse("0000:04:00.0")->to_string() == "0000:04:00.0");
    CHECK(parse("4:0.0")->to_string() == "0000:04:00.0");

    CHECK_FALSE(parse(""));
    CHECK_FALSE(parse("04:00"));
    CHECK_FALSE(parse("04:20.0"));  // device numbers end at 1f
    CHECK_FALSE(parse("04:00.8"));  // functions at 7
    CHECK_FALSE(parse("04:00.0x"));
    CHECK_FALSE(parse("12345:04:00.0"));
    CHECK_FALSE(parse("0000:004:00.0"));
    CHECK_FALSE(parse("nvme0"));
    std::string error;
    parse_host_pci_address("nvme0", error);
    CHECK_THAT(error, Contains("'nvme0' is not a PCI address") && Contains("0000:04:00.0"));
}

TEST_CASE("reserved IOVA regions from sysfs", "[vfio]") {
    CHECK(parse_reserved_regions("0x00000000fee00000 0x00000000feefffff msi\n"
                                 "0x00000000000a0000 0x00000000000bffff direct-relaxable\n"
                                 "garbage\n0x10 0x5 reserved\n") ==
          std::vector<IovaRegion>{{0xfee00000, 0xfeefffff, "msi"}, {0xa0000, 0xbffff, "direct-relaxable"}});
    CHECK(parse_reserved_regions("").empty());
}

TEST_CASE("sysfs probe: a device bound to vfio-pci in a viable group", "[vfio]") {
    FakeSysfs sysfs;
    sysfs.add_device("0000:00:04.0", "vfio-pci", 7);
    const HostPciDevice device = probe_host_pci_device(sysfs.root(), {0, 0, 4, 0}, "--vfio-pci 00:04.0");
    CHECK(device.iommu_group == 7);
    CHECK(device.group_path() == "/dev/vfio/7");
    CHECK(device.vendor_id == 0x1b36);
    CHECK(device.device_id == 0x0010);
    CHECK(device.reserved_regions == std::vector<IovaRegion>{{0xfee00000, 0xfeefffff, "msi"}});
}

TEST_CASE("sysfs probe: every problem a person can fix is one line that says how", "[vfio]") {
    FakeSysfs sysfs;
    CHECK_THAT(probe_error(sysfs, "0000:00:09.0"),
               Contains("--vfio-pci 0000:00:09.0: no PCI device 0000:00:09.0 on this host") && Contains("lspci -D"));

    sysfs.add_device("0000:00:04.0", "nvme", 3);
    const std::string bound = probe_error(sysfs, "0000:00:04.0");
    CHECK_THAT(bound, Contains("0000:00:04.0 (1b36:0010) is bound to nvme, not to vfio-pci; bind it with: "
                               "modprobe vfio-pci && echo vfio-pci > "));
    CHECK_THAT(bound, Contains("/bus/pci/drivers/nvme/unbind && echo 0000:00:04.0 > "));
    CHECK_THAT(bound, Contains("/bus/pci/drivers_probe"));
    CHECK(bound.find('\n') == std::string::npos);

    sysfs.add_device("0000:00:05.0", "", 4);
    sysfs.add_driver("vfio-pci");  // loaded now: no modprobe in the advice
    const std::string unbound = probe_error(sysfs, "0000:00:05.0");
    CHECK_THAT(unbound, Contains("is bound to no driver, not to vfio-pci; bind it with: echo vfio-pci > "));
    CHECK_THAT(unbound, !Contains("modprobe") && !Contains("unbind"));

    sysfs.add_device("0000:00:06.0", "vfio-pci", -1);
    CHECK_THAT(probe_error(sysfs, "0000:00:06.0"),
               Contains("has no IOMMU group: the host's IOMMU is off (boot the host with intel_iommu=on"));

    // A group with another function a host driver owns.
    sysfs.add_device("0000:01:00.0", "vfio-pci", 9);
    sysfs.add_device("0000:01:00.1", "snd_hda_intel", -1);
    fs::create_directory_symlink(fs::path(sysfs.root()) / "devices/pci0000:00/0000:01:00.1",
                                 fs::path(sysfs.root()) / "kernel/iommu_groups/9/devices/0000:01:00.1");
    sysfs.add_device("0000:01:00.2", "pcieport", -1);  // a bridge's driver: allowed
    fs::create_directory_symlink(fs::path(sysfs.root()) / "devices/pci0000:00/0000:01:00.2",
                                 fs::path(sysfs.root()) / "kernel/iommu_groups/9/devices/0000:01:00.2");
    CHECK_THAT(probe_error(sysfs, "0000:01:00.0"),
               Contains("IOMMU group 9 of 0000:01:00.0 is not viable: 0000:01:00.1 (bound to snd_hda_intel) is in it "
                        "too; bind every device of the group to vfio-pci"));
}

TEST_CASE("VFIO viability: which drivers may share a group", "[vfio]") {
    CHECK(vfio_viable_driver(""));
    CHECK(vfio_viable_driver("vfio-pci"));
    CHECK(vfio_viable_driver("pci-stub"));
    CHECK(vfio_viable_driver("pcieport"));
    CHECK_FALSE(vfio_viable_driver("nvme"));
    CHECK_FALSE(vfio_viable_driver("e1000e"));
}

TEST_CASE("pinning guest RAM: the locked-memory limit is checked up front", "[vfio]") {
    CHECK_FALSE(memlock_problem(1ull << 30, 2ull << 30, false));
    CHECK_FALSE(memlock_problem(1ull << 30, 8 << 20, true));  // CAP_IPC_LOCK: no limit applies
    CHECK_FALSE(memlock_problem(1ull << 30, RLIM_INFINITY, false));
    const auto problem = memlock_problem(1ull << 30, 8 << 20, false);
    REQUIRE(problem);
    CHECK(*problem ==
          "the locked-memory limit is 8192 KiB, and an assigned device pins all 1024 MiB of guest RAM; raise it to at "
          "least 1048576 KiB (ulimit -l 1048576, or LimitMEMLOCK= in a systemd unit) or run with CAP_IPC_LOCK");
}

TEST_CASE("VFIO nodes: a missing or foreign /dev/vfio is one line, exit 6", "[vfio]") {
    const auto open_error = [](const std::string& path) {
        try {
            VfioContainer::open("--vfio-pci 04:00.0", path);
        } catch (const VmmError& error) {
            CHECK(error.code() == ExitCode::BadDevice);
            return std::string(error.what());
        }
        return std::string();
    };
    CHECK(open_error("/nonexistent/vfio") ==
          "--vfio-pci 04:00.0: no /nonexistent/vfio: this host's kernel has no VFIO loaded (modprobe vfio-pci)");
    CHECK_THAT(open_error("/dev/null"), Contains("/dev/null speaks VFIO API version -1"));

    HostPciDevice device;
    device.address = {0, 4, 0, 0};
    device.iommu_group = 7;
    try {
        VfioGroup::open(device, "--vfio-pci 04:00.0", "/nonexistent");
        FAIL("opened a group that does not exist");
    } catch (const VmmError& error) {
        CHECK(error.code() == ExitCode::BadDevice);
        CHECK_THAT(std::string(error.what()), Contains("cannot open /nonexistent/7: No such file or directory"));
    }
}

TEST_CASE("guest RAM for DMA: IOVA = guest-physical, clear of reserved regions, inside the IOMMU's reach", "[vfio]") {
    const std::vector<MemoryRegion> ram_4g = GuestMemory::layout(4ull << 30);  // split around the PCI hole
    const std::vector<IovaRegion> msi{{0xfee00000, 0xfeefffff, "msi"}};
    const std::vector<VfioContainer::IovaRange> usable{{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};
    CHECK_FALSE(guest_ram_dma_problem(ram_4g, msi, usable));
    CHECK_FALSE(guest_ram_dma_problem(ram_4g, msi, {}));  // the kernel said nothing about ranges

    // A firmware range inside low RAM: "direct-relaxable" may be overridden, "reserved" may not.
    const std::vector<IovaRegion> rmrr{{0xa0000, 0xbffff, "direct-relaxable"}};
    CHECK_FALSE(guest_ram_dma_problem(ram_4g, rmrr, usable));
    const std::vector<IovaRegion> firmware{{0x7f000000, 0x7fffffff, "reserved"}};
    const auto overlap = guest_ram_dma_problem(ram_4g, firmware, usable);
    REQUIRE(overlap);
    CHECK_THAT(*overlap, Contains("guest RAM 0x0-0xbfffffff overlaps the IOMMU's reserved reserved region "
                                  "0x7f000000-0x7fffffff") && Contains("give the guest less memory"));

    // An IOMMU with 36 address bits cannot reach RAM at 64 GiB.
    const std::vector<MemoryRegion> far{{64ull << 30, 1ull << 30, 0}};
    const auto beyond = guest_ram_dma_problem(far, msi, {{0, 0xfedfffff}, {0xfef00000, 0xfffffffff}});
    REQUIRE(beyond);
    CHECK_THAT(*beyond, Contains("is beyond what this host's IOMMU can map (up to 0xfffffffff)"));
}

TEST_CASE("VFIO_IOMMU_GET_INFO: the IOVA ranges in its capability chain, bounds-checked", "[vfio]") {
    // Header (argsz, flags, pgsizes, cap_offset, pad), then a migration-like
    // capability we skip, then the IOVA-range capability with two ranges.
    std::vector<uint8_t> info(0x60, 0);
    const auto put32 = [&](size_t at, uint32_t v) { std::memcpy(info.data() + at, &v, 4); };
    const auto put64 = [&](size_t at, uint64_t v) { std::memcpy(info.data() + at, &v, 8); };
    put32(0, 0x60);
    put32(4, VFIO_IOMMU_INFO_CAPS | VFIO_IOMMU_INFO_PGSIZES);
    put32(16, 0x20);                          // cap_offset
    put32(0x20, 99 | 1u << 16);               // id 99, version 1
    put32(0x24, 0x30);                        // next
    put32(0x30, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE | 1u << 16);
    put32(0x34, 0);                           // end of chain
    put32(0x38, 2);                           // nr_iovas
    put64(0x40, 0);
    put64(0x48, 0xfedfffff);
    put64(0x50, 0xfef00000);
    put64(0x58, 0x7fffffffff);
    auto ranges = VfioContainer::parse_iova_ranges(info);
    REQUIRE(ranges.size() == 2);
    CHECK(ranges[1].start == 0xfef00000);
    CHECK(ranges[1].end == 0x7fffffffff);

    put32(0x38, 1000);  // more ranges than the buffer holds: only what fits
    CHECK(VfioContainer::parse_iova_ranges(info).size() == 2);
    put32(0x34, 0x20);  // a chain going back ends the walk
    CHECK(VfioContainer::parse_iova_ranges(info).size() == 2);
    put32(16, 0x5c);    // a header running past the end
    CHECK(VfioContainer::parse_iova_ranges(info).empty());
    CHECK(VfioContainer::parse_iova_ranges(std::span(info).first(8)).empty());
}
