#pragma once
// Where a virtio-net device sends and gets its frames: a file descriptor
// that carries one frame per read()/write(), each preceded by the virtio-net
// header (a tap opened with IFF_VNET_HDR), plus the two knobs the device
// turns once the driver has negotiated. The device reads fd() itself
// (readv straight into guest memory) and transmits through send(), which
// for a tap is a writev() on fd() and for a backend inside this process
// (libslirp) a plain call; this interface exists so unit tests can hand it
// a socketpair and a fake for the knobs.

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>

namespace minikvm {

class NetBackend {
public:
    // Receive offloads a tap may hand us (TUNSETOFFLOAD's TUN_F_* bits, same values).
    static constexpr unsigned kOffloadCsum = 0x01;
    static constexpr unsigned kOffloadTso4 = 0x02;
    static constexpr unsigned kOffloadTso6 = 0x04;
    static constexpr unsigned kOffloadTsoEcn = 0x08;

    virtual ~NetBackend() = default;
    // Non-blocking, datagram-like: one frame per call.
    virtual int fd() const = 0;
    // The host resource's own name: "tap0".
    virtual const std::string& name() const = 0;
    // For log lines: "tap tap0", "user network".
    virtual std::string label() const = 0;
    // Which partial checksums and segmentation offloads may arrive on fd()
    // (kOffload* bits; 0: only complete, checksummed frames). Throws
    // std::system_error.
    virtual void set_offloads(unsigned offloads) = 0;
    // The header size on fd() in both directions: 10, or 12 with
    // MRG_RXBUF. Throws std::system_error.
    virtual void set_header_size(int bytes) = 0;
    // One transmitted frame: the header (set_header_size() bytes) and the
    // frame, gathered from `pieces`, which point into guest memory and are
    // valid during the call only. Like writev(): the bytes taken, or -1
    // with errno set (EAGAIN: try again once fd() is writable). The device
    // calls it holding its lock, from a vCPU or the event loop thread.
    virtual ssize_t send(std::span<const iovec> pieces) {
        return ::writev(fd(), pieces.data(), static_cast<int>(pieces.size()));
    }
    // After the last send() of one transmit round (one kick's worth).
    virtual void sent() {}
    // What the backend itself has to say in the SIGUSR1 report: lines
    // ending in '\n', or nothing.
    virtual std::string state_report() const { return {}; }
};

}  // namespace minikvm
