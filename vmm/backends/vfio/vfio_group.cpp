#include "vmm/backends/vfio/vfio_group.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>

#include "vmm/core/error.h"

namespace minikvm {

VfioGroup VfioGroup::open(const HostPciDevice& device, const std::string& option, const std::string& dev_root) {
    const std::string path = fmt::format("{}/{}", dev_root, device.iommu_group);
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    if (!fd) {
        const int error = errno;
        if (error == EACCES || error == EPERM)
            fail(ExitCode::BadDevice,
                 "{}: no permission to open {} (IOMMU group of {}): run as root, or give your user the group's "
                 "node (chown USER {})",
                 option, path, device.address.to_string(), path);
        if (error == EBUSY)
            fail(ExitCode::BadDevice, "{}: {} is busy: another process (another VM?) holds IOMMU group {}", option,
                 path, device.iommu_group);
        fail(ExitCode::BadDevice, "{}: cannot open {}: {}", option, path, std::strerror(error));
    }
    vfio_group_status status{};
    status.argsz = sizeof status;
    if (::ioctl(fd.get(), VFIO_GROUP_GET_STATUS, &status) != 0)
        throw std::system_error(errno, std::generic_category(), "VFIO_GROUP_GET_STATUS");
    if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
        fail(ExitCode::BadDevice,
             "{}: IOMMU group {} is not viable: a device in it is bound to a host driver (ls "
             "/sys/kernel/iommu_groups/{}/devices); bind every one to vfio-pci",
             option, device.iommu_group, device.iommu_group);
    return VfioGroup(std::move(fd), device.iommu_group, option);
}

void VfioGroup::attach(VfioContainer& container) {
    int container_fd = container.fd();
    if (::ioctl(fd_.get(), VFIO_GROUP_SET_CONTAINER, &container_fd) != 0)
        throw std::system_error(errno, std::generic_category(), "VFIO_GROUP_SET_CONTAINER");
    container.set_iommu();
}

UniqueFd VfioGroup::device_fd(const std::string& name) const {
    const int fd = ::ioctl(fd_.get(), VFIO_GROUP_GET_DEVICE_FD, name.c_str());
    if (fd < 0)
        fail(ExitCode::BadDevice, "{}: IOMMU group {} gives no device {}: {}", option_, number_, name,
             std::strerror(errno));
    return UniqueFd(fd);
}

}  // namespace minikvm
