// DiskImage: every way a --disk can be unusable is one VmmError with exit
// code 6 before the guest starts; a good image is open, sized and locked.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "temp_file.h"
#include "vmm/backends/block/disk_image.h"
#include "vmm/core/error.h"
#include "vmm/core/unique_fd.h"

using namespace minikvm;
using Catch::Matchers::Contains;

namespace {

DiskConfig config_for(const std::string& path, bool read_only = false, DiskCache cache = DiskCache::Writeback) {
    DiskConfig config;
    config.path = path;
    config.read_only = read_only;
    config.cache = cache;
    return config;
}

// The message DiskImage::open fails with, or "" if it opened.
std::string open_error(const DiskConfig& config) {
    try {
        DiskImage::open(config);
    } catch (const VmmError& error) {
        CHECK(error.code() == ExitCode::BadDevice);
        CHECK(std::string(error.what()).find('\n') == std::string::npos);
        return error.what();
    }
    return "";
}

}  // namespace

TEST_CASE("disk image: a good image is open, sized in sectors, and writable") {
    TempFile file(std::vector<uint8_t>(64 * 512, 0xab));
    DiskImage image = DiskImage::open(config_for(file.path()));
    CHECK(image.fd() >= 0);
    CHECK(image.size_bytes() == 64 * 512);
    CHECK(image.sectors() == 64);
    CHECK_FALSE(image.read_only());
    CHECK_FALSE(image.direct());
    CHECK_FALSE(image.block_device());
    CHECK(image.offset_alignment() == 1);
    CHECK((::fcntl(image.fd(), F_GETFL) & O_ACCMODE) == O_RDWR);
    CHECK((::fcntl(image.fd(), F_GETFL) & O_NONBLOCK) == 0);
    CHECK((::fcntl(image.fd(), F_GETFD) & FD_CLOEXEC) != 0);

    DiskImage moved = std::move(image);
    CHECK(moved.sectors() == 64);
}

TEST_CASE("disk image: missing, empty, odd-sized, non-file images are refused with exit code 6") {
    CHECK_THAT(open_error(config_for("/nonexistent/minikvm-disk.img")),
               Contains("disk '/nonexistent/minikvm-disk.img': No such file or directory"));
    TempFile empty(std::vector<uint8_t>{});
    CHECK_THAT(open_error(config_for(empty.path())), Contains("is empty"));
    TempFile odd(std::vector<uint8_t>(1000));
    CHECK_THAT(open_error(config_for(odd.path())), Contains("size 1000 bytes is not a multiple of 512"));
    CHECK_THAT(open_error(config_for("/tmp", true)), Contains("neither a regular file nor a block device"));
    CHECK_THAT(open_error(config_for("/dev/null", true)), Contains("neither a regular file nor a block device"));
}

TEST_CASE("disk image: a writer excludes everyone, readers share") {
    TempFile file(std::vector<uint8_t>(4096));
    {
        DiskImage writer = DiskImage::open(config_for(file.path()));
        CHECK_THAT(open_error(config_for(file.path())), Contains("is locked by another process"));
        CHECK_THAT(open_error(config_for(file.path(), true)), Contains("locked for writing"));
    }
    // Closing released the lock.
    {
        DiskImage reader1 = DiskImage::open(config_for(file.path(), true));
        DiskImage reader2 = DiskImage::open(config_for(file.path(), true));
        CHECK(reader1.read_only());
        CHECK((::fcntl(reader1.fd(), F_GETFL) & O_ACCMODE) == O_RDONLY);
        CHECK_THAT(open_error(config_for(file.path())), Contains("is locked by another process"));
    }
    // A lock taken by someone else (flock(1), another program) counts too.
    UniqueFd other(::open(file.path().c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(::flock(other.get(), LOCK_SH) == 0);
    CHECK_THAT(open_error(config_for(file.path())), Contains("is locked"));
    CHECK(open_error(config_for(file.path(), true)).empty());
}

TEST_CASE("disk image: cache=none opens with O_DIRECT and knows its alignment") {
    TempFile file(std::vector<uint8_t>(8192));
    std::string error = open_error(config_for(file.path(), false, DiskCache::None));
    if (!error.empty()) {
        // Some filesystems (tmpfs before Linux 6.6) cannot do direct I/O:
        // that must be the clear error, nothing else.
        CHECK_THAT(error, Contains("cache=none needs O_DIRECT"));
        return;
    }
    DiskImage image = DiskImage::open(config_for(file.path(), false, DiskCache::None));
    CHECK(image.direct());
    CHECK((::fcntl(image.fd(), F_GETFL) & O_DIRECT) != 0);
    CHECK(image.offset_alignment() >= 512);
    CHECK((image.offset_alignment() & (image.offset_alignment() - 1)) == 0);
    CHECK(image.memory_alignment() >= 1);
}
