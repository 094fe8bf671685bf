#include "vmm/backends/net/tap_device.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "vmm/core/error.h"

namespace minikvm {

TapDevice TapDevice::open(const std::string& name) {
    if (name.empty() || name.size() >= IFNAMSIZ)
        fail(ExitCode::BadDevice, "tap '{}': an interface name is 1 to {} characters", name, IFNAMSIZ - 1);
    const bool existed = ::if_nametoindex(name.c_str()) != 0;

    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
        const int error = errno;
        if (error == ENOENT)
            fail(ExitCode::BadDevice, "tap '{}': /dev/net/tun does not exist (is the tun module loaded?)", name);
        fail(ExitCode::BadDevice, "tap '{}': cannot open /dev/net/tun: {}{}", name, std::strerror(error),
             error == EACCES || error == EPERM ? " (run minikvm as a user allowed to use it)" : "");
    }

    unsigned int features = 0;
    if (::ioctl(fd.get(), TUNGETFEATURES, &features) == 0 && (features & IFF_VNET_HDR) == 0)
        fail(ExitCode::BadDevice, "tap '{}': this kernel's tun driver has no IFF_VNET_HDR", name);

    ifreq request{};
    std::memcpy(request.ifr_name, name.c_str(), name.size());
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(fd.get(), TUNSETIFF, &request) != 0) {
        const int error = errno;
        switch (error) {
            case EPERM:
                if (existed)
                    fail(ExitCode::BadDevice,
                         "tap '{}': not allowed to attach (it belongs to another user or group; CAP_NET_ADMIN "
                         "overrides that)",
                         name);
                fail(ExitCode::BadDevice,
                     "tap '{}': does not exist, and creating it needs CAP_NET_ADMIN (or create it first: ip tuntap "
                     "add {} mode tap user $USER)",
                     name, name);
            case EBUSY:
                fail(ExitCode::BadDevice, "tap '{}': busy (another process has it open, or it is multi_queue)", name);
            case EINVAL:
                fail(ExitCode::BadDevice, "tap '{}': exists but is not a tap minikvm can attach to (a tun, a "
                                          "multi_queue tap, or not a tun/tap interface at all)",
                     name);
            default: fail(ExitCode::BadDevice, "tap '{}': TUNSETIFF: {}", name, std::strerror(error));
        }
    }
    TapDevice tap(std::move(fd), std::string(request.ifr_name, ::strnlen(request.ifr_name, IFNAMSIZ)), !existed);
    // Until the guest negotiates, frames come with a 10-byte header and no
    // offloads: complete, checksummed frames only.
    try {
        tap.set_header_size(10);
        tap.set_offloads(0);
    } catch (const std::system_error& error) {
        fail(ExitCode::BadDevice, "tap '{}': {}", name, error.what());
    }
    return tap;
}

void TapDevice::set_offloads(unsigned offloads) {
    if (::ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(offloads)) != 0)
        throw std::system_error(errno, std::generic_category(), "TUNSETOFFLOAD");
}

void TapDevice::set_header_size(int bytes) {
    if (::ioctl(fd_.get(), TUNSETVNETHDRSZ, &bytes) != 0)
        throw std::system_error(errno, std::generic_category(), "TUNSETVNETHDRSZ");
}

}  // namespace minikvm
