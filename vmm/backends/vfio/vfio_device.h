#pragma once
// An assigned device's VFIO fd: what it has (regions: the BARs, the ROM,
// configuration space; interrupts: INTx, MSI, MSI-X), access to its regions
// through the fd (pread/pwrite at the region's offset), mmap of the regions
// that allow it, and reset. The device model (configuration virtualization,
// BAR mapping, interrupts) is built on top of this.

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vmm/core/unique_fd.h"

namespace minikvm {

class VfioDevice {
public:
    struct Region {
        uint32_t index = 0;
        uint32_t flags = 0;  // VFIO_REGION_INFO_FLAG_*
        uint64_t size = 0;   // 0: the device lacks it
        uint64_t offset = 0; // in the device fd
        bool readable() const;
        bool writable() const;
        bool mappable() const;
    };
    struct Irq {
        uint32_t index = 0;
        uint32_t flags = 0;  // VFIO_IRQ_INFO_*
        uint32_t count = 0;
    };

    // Queries everything once; std::system_error when the kernel refuses.
    VfioDevice(UniqueFd fd, std::string name);

    int fd() const { return fd_.get(); }
    const std::string& name() const { return name_; }
    bool is_pci() const;
    bool can_reset() const;
    const std::vector<Region>& regions() const { return regions_; }
    const std::vector<Irq>& irqs() const { return irqs_; }

    // Whole accesses inside `region`, or false (short or failed transfer,
    // or out of the region's bounds).
    bool read(uint32_t region, uint64_t offset, std::span<uint8_t> data) const;
    bool write(uint32_t region, uint64_t offset, std::span<const uint8_t> data) const;
    // VFIO_DEVICE_RESET; false when the device has none or it failed.
    bool reset() const;

private:
    const Region* region(uint32_t index) const;

    UniqueFd fd_;
    std::string name_;
    uint32_t flags_ = 0;
    std::vector<Region> regions_;
    std::vector<Irq> irqs_;
};

}  // namespace minikvm
