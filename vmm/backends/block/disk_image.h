#pragma once
// A disk image file (or host block device) opened for a virtio-blk disk:
// the descriptor, the size, and the lock that keeps a second minikvm from
// writing the same image. Everything that can go wrong because of what the
// user named is checked here, before the guest starts, and reported as one
// line with exit code 6 (ExitCode::BadDevice).
//
// Locking: flock(2) on the open file, LOCK_EX for a writable disk and LOCK_SH
// for a read-only one, never waiting. So any number of minikvm processes may
// share an image read-only, but a writer excludes everyone else. The lock
// belongs to the open file and goes away with it (also when the process dies).

#include <cstdint>
#include <string>

#include "vmm/backends/block/disk_config.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class DiskImage {
public:
    static constexpr uint32_t kSectorSize = 512;

    // Opens, checks and locks the image `config` names: it must exist, be a
    // regular file or a block device, be readable (and writable unless
    // read-only), hold a non-zero multiple of 512 bytes, support O_DIRECT for
    // cache=none, and not be locked by another process. Throws VmmError
    // (BadDevice) naming the path and the problem.
    static DiskImage open(const DiskConfig& config);

    DiskImage(DiskImage&&) = default;
    DiskImage& operator=(DiskImage&&) = default;
    DiskImage(const DiskImage&) = delete;
    DiskImage& operator=(const DiskImage&) = delete;
    ~DiskImage() = default;  // closing the file releases the lock

    int fd() const { return fd_.get(); }
    const std::string& path() const { return path_; }
    uint64_t size_bytes() const { return size_; }
    uint64_t sectors() const { return size_ / kSectorSize; }
    bool read_only() const { return read_only_; }
    bool direct() const { return direct_; }  // opened with O_DIRECT (cache=none)
    bool block_device() const { return block_device_; }
    // O_DIRECT constraints: file offsets and the length of every buffer
    // must be multiples of offset_alignment(), buffer addresses multiples
    // of memory_alignment(). Both are 1 without O_DIRECT.
    uint32_t offset_alignment() const { return offset_alignment_; }
    uint32_t memory_alignment() const { return memory_alignment_; }

private:
    DiskImage() = default;

    UniqueFd fd_;
    std::string path_;
    uint64_t size_ = 0;
    bool read_only_ = false;
    bool direct_ = false;
    bool block_device_ = false;
    uint32_t offset_alignment_ = 1;
    uint32_t memory_alignment_ = 1;
};

}  // namespace minikvm
