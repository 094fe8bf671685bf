// The whole host-side VFIO sequence minikvm's device assignment relies on,
// against a real device (in CI: the nested test host's emulated NVMe
// controller behind its emulated IOMMU): the sysfs checks, the memlock
// check, container, group, type-1 IOMMU, guest RAM mapped for DMA as
// minikvm maps it (GuestRamDma, IOVA = guest-physical), the device fd, its regions and interrupts,
// configuration space and BAR 0 read through the fd and through an mmap,
// and a reset. Prints one "VFIO-PROBE ..." line per fact; a person's error
// is the one line minikvm would print, exit 6.
//
//   vfio_probe [DOMAIN:]BUS:DEV.FN

#include <linux/vfio.h>
#include <sys/mman.h>

#include <cerrno>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "vmm/backends/vfio/dma_memlock.h"
#include "vmm/backends/vfio/guest_ram_dma.h"
#include "vmm/backends/vfio/host_pci_address.h"
#include "vmm/backends/vfio/host_pci_device.h"
#include "vmm/backends/vfio/vfio_container.h"
#include "vmm/backends/vfio/vfio_device.h"
#include "vmm/backends/vfio/vfio_group.h"
#include "vmm/core/error.h"
#include "vmm/core/guest_memory.h"

using namespace minikvm;

namespace {

constexpr uint64_t kDmaBytes = 64ull << 20;

void say(const std::string& line) { std::printf("VFIO-PROBE %s\n", line.c_str()); }

int probe(const std::string& text) {
    std::string error;
    const auto address = parse_host_pci_address(text, error);
    if (!address) fail(ExitCode::Usage, "vfio_probe: {}", error);
    const std::string option = "--vfio-pci " + text;
    const HostPciDevice host = probe_host_pci_device("/sys", *address, option);
    say(fmt::format("device {} {:04x}:{:04x} iommu_group={} reserved_regions={}", address->to_string(),
                    host.vendor_id, host.device_id, host.iommu_group, host.reserved_regions.size()));
    check_memlock_for_dma(kDmaBytes, option);

    VfioContainer container = VfioContainer::open(option);
    VfioGroup group = VfioGroup::open(host, option);
    group.attach(container);
    say(fmt::format("container iommu={} group={} attached",
                    container.iommu_type() == VFIO_TYPE1v2_IOMMU ? "type1v2" : "type1", group.number()));
    for (const VfioContainer::IovaRange& range : container.iova_ranges())
        say(fmt::format("iova range {:#x}-{:#x}", range.start, range.end));

    const GuestMemory ram = GuestMemory::allocate(kDmaBytes);
    std::optional<GuestRamDma> dma;
    dma.emplace(container, ram, host.reserved_regions, option);
    for (const auto& [iova, size] : dma->mappings()) say(fmt::format("dma map iova={:#x} size={:#x}", iova, size));

    VfioDevice device(group.device_fd(address->to_string()), address->to_string());
    say(fmt::format("device fd pci={} reset={} regions={} irqs={}", device.is_pci() ? "yes" : "no",
                    device.can_reset() ? "yes" : "no", device.regions().size(), device.irqs().size()));
    for (const VfioDevice::Region& region : device.regions())
        if (region.size != 0)
            say(fmt::format("region {} size={:#x} read={} write={} mmap={}", region.index, region.size,
                            region.readable() ? "yes" : "no", region.writable() ? "yes" : "no",
                            region.mappable() ? "yes" : "no"));
    for (const VfioDevice::Irq& irq : device.irqs())
        if (irq.count != 0) say(fmt::format("irq {} count={}", irq.index, irq.count));

    uint8_t ids[4] = {};
    if (!device.read(VFIO_PCI_CONFIG_REGION_INDEX, 0, ids)) fail(ExitCode::HostError, "config space read failed");
    say(fmt::format("config vendor={:02x}{:02x} device={:02x}{:02x}", ids[1], ids[0], ids[3], ids[2]));

    // BAR 0: its first 8 bytes through the fd, and through an mmap if allowed.
    uint64_t through_fd = 0;
    if (device.read(VFIO_PCI_BAR0_REGION_INDEX, 0, {reinterpret_cast<uint8_t*>(&through_fd), 8}))
        say(fmt::format("bar0 read {:#018x}", through_fd));
    const VfioDevice::Region& bar0 = device.regions().at(VFIO_PCI_BAR0_REGION_INDEX);
    if (bar0.mappable()) {
        void* mapped = ::mmap(nullptr, bar0.size, PROT_READ | PROT_WRITE, MAP_SHARED, device.fd(),
                              static_cast<off_t>(bar0.offset));
        if (mapped == MAP_FAILED) fail(ExitCode::HostError, "mmap of BAR 0: {}", std::strerror(errno));
        uint64_t through_mmap = 0;
        std::memcpy(&through_mmap, mapped, 8);
        say(fmt::format("bar0 mmap {:#018x} {}", through_mmap, through_mmap == through_fd ? "same" : "DIFFERENT"));
        ::munmap(mapped, bar0.size);
    }
    say(fmt::format("reset {}", device.reset() ? "ok" : "failed"));
    dma.reset();  // unmaps
    say("done");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: vfio_probe [DOMAIN:]BUS:DEV.FN\n");
        return 2;
    }
    try {
        return probe(argv[1]);
    } catch (const VmmError& error) {
        std::fprintf(stderr, "minikvm: %s\n", error.what());
        return to_int(error.code());
    } catch (const std::exception& error) {
        std::fprintf(stderr, "vfio_probe: %s\n", error.what());
        return to_int(ExitCode::HostError);
    }
}
