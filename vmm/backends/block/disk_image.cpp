#include "vmm/backends/block/disk_image.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "vmm/core/error.h"

namespace minikvm {

namespace {

[[noreturn]] void bad_disk(const std::string& path, const std::string& problem) {
    fail(ExitCode::BadDevice, "disk '{}': {}", path, problem);
}

bool power_of_two(uint32_t value) { return value != 0 && (value & (value - 1)) == 0; }

}  // namespace

DiskImage DiskImage::open(const DiskConfig& config) {
    DiskImage image;
    image.path_ = config.path;
    image.read_only_ = config.read_only;
    image.direct_ = config.cache == DiskCache::None;
    const std::string& path = config.path;

    // O_NONBLOCK only guards the open against a FIFO; it is cleared below.
    int flags = (config.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK;
    if (image.direct_) flags |= O_DIRECT;
    image.fd_ = UniqueFd(::open(path.c_str(), flags));
    if (!image.fd_) {
        const int error = errno;
        // EINVAL on open with O_DIRECT: the filesystem cannot do direct I/O.
        if (error == EINVAL && image.direct_)
            bad_disk(path, "cache=none needs O_DIRECT, which this filesystem does not support (use cache=writeback)");
        if (error == EROFS || (error == EACCES && !config.read_only))
            bad_disk(path, std::string(std::strerror(error)) + " (add ',ro' for a read-only disk)");
        bad_disk(path, std::strerror(error));
    }
    const int status_flags = ::fcntl(image.fd(), F_GETFL);
    if (status_flags < 0 || ::fcntl(image.fd(), F_SETFL, status_flags & ~O_NONBLOCK) < 0)
        bad_disk(path, std::strerror(errno));

    struct stat st {};
    if (::fstat(image.fd(), &st) < 0) bad_disk(path, std::strerror(errno));
    if (S_ISREG(st.st_mode)) {
        image.size_ = static_cast<uint64_t>(st.st_size);
    } else if (S_ISBLK(st.st_mode)) {
        image.block_device_ = true;
        if (::ioctl(image.fd(), BLKGETSIZE64, &image.size_) < 0)
            bad_disk(path, std::string("cannot read the block device's size: ") + std::strerror(errno));
    } else {
        bad_disk(path, "is neither a regular file nor a block device");
    }

    // Before the size checks: "locked" is the more useful answer when another
    // minikvm is busy with the file.
    if (::flock(image.fd(), (config.read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            bad_disk(path, config.read_only
                               ? "is locked for writing by another process (another minikvm, or another --disk here)"
                               : "is locked by another process (another minikvm, or another --disk here)");
        bad_disk(path, std::string("cannot lock: ") + std::strerror(errno));
    }

    if (image.size_ == 0) bad_disk(path, "is empty (0 bytes)");
    if (image.size_ % kSectorSize != 0)
        bad_disk(path, fmt::format("size {} bytes is not a multiple of 512", image.size_));

    if (image.direct_) {
        // What direct I/O needs (Linux 6.1+ reports it); 512 when unknown,
        // the traditional logical block size.
        image.offset_alignment_ = kSectorSize;
        image.memory_alignment_ = kSectorSize;
        struct statx sx {};
        if (::statx(image.fd(), "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN) &&
            power_of_two(sx.stx_dio_offset_align) && power_of_two(sx.stx_dio_mem_align)) {
            image.offset_alignment_ = std::max<uint32_t>(sx.stx_dio_offset_align, kSectorSize);
            image.memory_alignment_ = sx.stx_dio_mem_align;
        } else if (image.block_device_) {
            int logical = 0;
            if (::ioctl(image.fd(), BLKSSZGET, &logical) == 0 && logical > 0 &&
                power_of_two(static_cast<uint32_t>(logical)))
                image.offset_alignment_ = image.memory_alignment_ =
                    std::max<uint32_t>(static_cast<uint32_t>(logical), kSectorSize);
        }
        if (image.size_ % image.offset_alignment_ != 0)
            bad_disk(path, fmt::format("size {} bytes is not a multiple of {}, the block size direct I/O needs here "
                                       "(use cache=writeback)",
                                       image.size_, image.offset_alignment_));
    }
    return image;
}

}  // namespace minikvm
