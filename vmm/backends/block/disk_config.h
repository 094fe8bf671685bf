#pragma once
// One --disk option, as parsed (vmm/cli) and before anything is opened
// (DiskImage opens it, VirtioBlk serves it).

#include <string>

namespace minikvm {

// How the image file is opened (README "Disks").
enum class DiskCache {
    Writeback,  // the host page cache; FLUSH makes writes durable (fdatasync)
    None,       // O_DIRECT: no host caching; FLUSH still reaches the device's cache
};

// Which asynchronous I/O engine serves the disk. IoUring falls back to the
// thread pool by itself when the host refuses io_uring at run time.
enum class DiskAio { IoUring, Threads };

struct DiskConfig {
    std::string path;
    bool read_only = false;
    DiskCache cache = DiskCache::Writeback;
    DiskAio aio = DiskAio::IoUring;
    std::string serial;  // VIRTIO_BLK_T_GET_ID answer: 0..20 printable ASCII bytes
};

}  // namespace minikvm
