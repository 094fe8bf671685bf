#pragma once
// An assigned device's VFIO fd: what it has (regions: the BARs, the ROM,
// configuration space; interrupts: INTx, MSI, MSI-X), access to its regions
// through the fd (pread/pwrite at the region's offset), mmap of the regions
// that allow it, and reset. The device model (configuration virtualization,
// BAR mapping, interrupts) is built on top of this.

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/core/host_mapping.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

// What the device model (devices/vfio/) does with an assigned device:
// VfioDevice is the real one; unit tests give a fake, so configuration
// virtualization and the interrupt plumbing are tested without a device.
class VfioDeviceIo {
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

    virtual ~VfioDeviceIo() = default;

    virtual const std::string& name() const = 0;
    virtual bool can_reset() const = 0;
    virtual const std::vector<Region>& regions() const = 0;
    virtual const std::vector<Irq>& irqs() const = 0;
    // Whole accesses inside `region`, or false (short or failed transfer,
    // or out of the region's bounds).
    virtual bool read(uint32_t region, uint64_t offset, std::span<uint8_t> data) const = 0;
    virtual bool write(uint32_t region, uint64_t offset, std::span<const uint8_t> data) const = 0;
    // VFIO_DEVICE_RESET; false when the device has none or it failed.
    virtual bool reset() const = 0;
    // VFIO_DEVICE_SET_IRQS with eventfds: `action` is VFIO_IRQ_SET_ACTION_TRIGGER
    // or _UNMASK; fds[i] serves vector start + i (-1: none). False (errno
    // set) when the kernel refuses.
    virtual bool set_irq_eventfds(uint32_t index, uint32_t action, uint32_t start, std::span<const int32_t> fds) = 0;
    // Turns interrupt `index` (INTx, MSI, MSI-X) off: no trigger at all.
    virtual bool disable_irq(uint32_t index) = 0;
    // A shared mapping of all of region `index`; nullopt when it cannot be
    // mapped (not mappable, or the kernel maps only parts of it).
    virtual std::optional<HostMapping> map_region(uint32_t index) = 0;

    // Helpers on top of read/write for configuration space (region 7).
    bool read_config(uint32_t offset, std::span<uint8_t> data) const;
    bool write_config(uint32_t offset, std::span<const uint8_t> data) const;
};

class VfioDevice : public VfioDeviceIo {
public:
    // Queries everything once; std::system_error when the kernel refuses.
    VfioDevice(UniqueFd fd, std::string name);

    int fd() const { return fd_.get(); }
    const std::string& name() const override { return name_; }
    bool is_pci() const;
    bool can_reset() const override;
    const std::vector<Region>& regions() const override { return regions_; }
    const std::vector<Irq>& irqs() const override { return irqs_; }

    bool read(uint32_t region, uint64_t offset, std::span<uint8_t> data) const override;
    bool write(uint32_t region, uint64_t offset, std::span<const uint8_t> data) const override;
    bool reset() const override;
    bool set_irq_eventfds(uint32_t index, uint32_t action, uint32_t start, std::span<const int32_t> fds) override;
    bool disable_irq(uint32_t index) override;
    std::optional<HostMapping> map_region(uint32_t index) override;

private:
    const Region* region(uint32_t index) const;

    UniqueFd fd_;
    std::string name_;
    uint32_t flags_ = 0;
    std::vector<Region> regions_;
    std::vector<Irq> irqs_;
};

}  // namespace minikvm
