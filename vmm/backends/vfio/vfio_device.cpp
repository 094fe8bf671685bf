#include "vmm/backends/vfio/vfio_device.h"

#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace minikvm {

bool VfioDeviceIo::Region::readable() const { return (flags & VFIO_REGION_INFO_FLAG_READ) != 0; }
bool VfioDeviceIo::Region::writable() const { return (flags & VFIO_REGION_INFO_FLAG_WRITE) != 0; }
bool VfioDeviceIo::Region::mappable() const { return (flags & VFIO_REGION_INFO_FLAG_MMAP) != 0; }

VfioDevice::VfioDevice(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {
    vfio_device_info info{};
    info.argsz = sizeof info;
    if (::ioctl(fd_.get(), VFIO_DEVICE_GET_INFO, &info) != 0)
        throw std::system_error(errno, std::generic_category(), "VFIO_DEVICE_GET_INFO");
    flags_ = info.flags;
    for (uint32_t i = 0; i < info.num_regions; ++i) {
        vfio_region_info region{};
        region.argsz = sizeof region;
        region.index = i;
        // A region the device lacks (an unused BAR) may be refused: size 0.
        if (::ioctl(fd_.get(), VFIO_DEVICE_GET_REGION_INFO, &region) != 0) region = {};
        regions_.push_back({i, region.flags, region.size, region.offset});
    }
    for (uint32_t i = 0; i < info.num_irqs; ++i) {
        vfio_irq_info irq{};
        irq.argsz = sizeof irq;
        irq.index = i;
        if (::ioctl(fd_.get(), VFIO_DEVICE_GET_IRQ_INFO, &irq) != 0) irq = {};
        irqs_.push_back({i, irq.flags, irq.count});
    }
}

bool VfioDevice::is_pci() const { return (flags_ & VFIO_DEVICE_FLAGS_PCI) != 0; }
bool VfioDevice::can_reset() const { return (flags_ & VFIO_DEVICE_FLAGS_RESET) != 0; }

const VfioDevice::Region* VfioDevice::region(uint32_t index) const {
    return index < regions_.size() && regions_[index].size != 0 ? &regions_[index] : nullptr;
}

bool VfioDevice::read(uint32_t index, uint64_t offset, std::span<uint8_t> data) const {
    const Region* r = region(index);
    if (r == nullptr || !r->readable() || offset > r->size || data.size() > r->size - offset) return false;
    return ::pread(fd_.get(), data.data(), data.size(), static_cast<off_t>(r->offset + offset)) ==
           static_cast<ssize_t>(data.size());
}

bool VfioDevice::write(uint32_t index, uint64_t offset, std::span<const uint8_t> data) const {
    const Region* r = region(index);
    if (r == nullptr || !r->writable() || offset > r->size || data.size() > r->size - offset) return false;
    return ::pwrite(fd_.get(), data.data(), data.size(), static_cast<off_t>(r->offset + offset)) ==
           static_cast<ssize_t>(data.size());
}

bool VfioDevice::reset() const { return can_reset() && ::ioctl(fd_.get(), VFIO_DEVICE_RESET) == 0; }

bool VfioDevice::set_irq_eventfds(uint32_t index, uint32_t action, uint32_t start, std::span<const int32_t> fds) {
    std::vector<uint8_t> buffer(sizeof(vfio_irq_set) + fds.size_bytes());
    auto* set = reinterpret_cast<vfio_irq_set*>(buffer.data());
    set->argsz = static_cast<uint32_t>(buffer.size());
    set->flags = VFIO_IRQ_SET_DATA_EVENTFD | action;
    set->index = index;
    set->start = start;
    set->count = static_cast<uint32_t>(fds.size());
    std::memcpy(buffer.data() + sizeof(vfio_irq_set), fds.data(), fds.size_bytes());
    return ::ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, set) == 0;
}

bool VfioDevice::disable_irq(uint32_t index) {
    vfio_irq_set set{};
    set.argsz = sizeof set;
    set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
    set.index = index;
    return ::ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, &set) == 0;
}

std::optional<HostMapping> VfioDevice::map_region(uint32_t index) {
    const Region* r = region(index);
    if (r == nullptr || !r->mappable()) return std::nullopt;
    int protection = (r->readable() ? PROT_READ : 0) | (r->writable() ? PROT_WRITE : 0);
    void* address = ::mmap(nullptr, r->size, protection, MAP_SHARED, fd_.get(), static_cast<off_t>(r->offset));
    if (address == MAP_FAILED) return std::nullopt;
    return HostMapping(address, r->size);
}

bool VfioDeviceIo::read_config(uint32_t offset, std::span<uint8_t> data) const {
    return read(VFIO_PCI_CONFIG_REGION_INDEX, offset, data);
}

bool VfioDeviceIo::write_config(uint32_t offset, std::span<const uint8_t> data) const {
    return write(VFIO_PCI_CONFIG_REGION_INDEX, offset, data);
}

}  // namespace minikvm
