#pragma once
// A host tap interface opened for a virtio-net device: /dev/net/tun with
// IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, attached to the interface of that name
// or creating it (then it lives as long as minikvm). Opened non-blocking.
// Offloads start off (the host sends only complete, checksummed frames
// until the guest driver negotiates more) and the header at 10 bytes.
//
// Errors a person can fix (no /dev/net/tun, no permission, no
// CAP_NET_ADMIN to create the tap, the tap busy or not a tap) throw
// VmmError with ExitCode::BadDevice and one clear line.

#include <string>

#include "vmm/backends/net/net_backend.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class TapDevice : public NetBackend {
public:
    static TapDevice open(const std::string& name);

    int fd() const override { return fd_.get(); }
    const std::string& name() const override { return name_; }
    std::string label() const override { return "tap " + name_; }
    // Whether open() made the interface (else it existed).
    bool created() const { return created_; }
    void set_offloads(unsigned offloads) override;
    void set_header_size(int bytes) override;

private:
    TapDevice(UniqueFd fd, std::string name, bool created)
        : fd_(std::move(fd)), name_(std::move(name)), created_(created) {}

    UniqueFd fd_;
    std::string name_;
    bool created_ = false;
};

}  // namespace minikvm
