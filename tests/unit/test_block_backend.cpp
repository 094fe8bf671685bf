// The block backend on its own: requests in, completions by cookie out, and
// the file logic it owns (the write-zeroes fallbacks, O_DIRECT bounce
// buffers and their budget, cancellation). The device-level behaviour is
// in test_virtio_blk.cpp.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "vmm/backends/block/block_backend.h"
#include "vmm/core/unique_fd.h"

using namespace minikvm;

namespace {

// An image file of `bytes` filled with 0xa5, in `dir`; deleted at the end.
class Image {
public:
    Image(const std::string& dir, uint64_t bytes) {
        path_ = dir + "/minikvm-backend-XXXXXX";
        UniqueFd fd(::mkstemp(path_.data()));
        REQUIRE(fd);
        const std::vector<uint8_t> fill(1u << 20, 0xa5);
        for (uint64_t at = 0; at < bytes; at += fill.size())
            REQUIRE(::pwrite(fd.get(), fill.data(), std::min<uint64_t>(fill.size(), bytes - at),
                             static_cast<off_t>(at)) > 0);
    }
    ~Image() { ::unlink(path_.c_str()); }
    const std::string& path() const { return path_; }
    std::vector<uint8_t> bytes(uint64_t offset, size_t length) const {
        std::vector<uint8_t> out(length);
        UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
        REQUIRE(::pread(fd.get(), out.data(), length, static_cast<off_t>(offset)) == static_cast<ssize_t>(length));
        return out;
    }

private:
    std::string path_;
};

std::unique_ptr<BlockBackend> open(const std::string& path, DiskAio aio, DiskCache cache = DiskCache::Writeback) {
    DiskConfig config;
    config.path = path;
    config.aio = aio;
    config.cache = cache;
    std::string fallback;
    return std::make_unique<BlockBackend>(DiskImage::open(config), aio, 64, fallback);
}

// Reaps until `count` completions have arrived; returns them by cookie.
std::map<uint64_t, int> reap(BlockBackend& backend, size_t count) {
    std::map<uint64_t, int> done;
    std::vector<BlockCompletion> out;
    while (done.size() < count) {
        out.clear();
        backend.reap(out, true);
        for (const BlockCompletion& c : out) {
            REQUIRE(done.count(c.cookie) == 0);  // one completion per request
            done[c.cookie] = c.error;
        }
        REQUIRE((done.size() == count || backend.in_flight() > 0));
    }
    return done;
}

BlockRequest request(BlockRequest::Kind kind, uint64_t cookie) {
    BlockRequest r;
    r.kind = kind;
    r.cookie = cookie;
    return r;
}

BlockRequest transfer(BlockRequest::Kind kind, uint64_t cookie, uint64_t offset, std::vector<uint8_t>& buffer) {
    BlockRequest r;
    r.kind = kind;
    r.cookie = cookie;
    r.offset = offset;
    r.buffers = {{buffer.data(), buffer.size()}};
    return r;
}

}  // namespace

TEST_CASE("block backend: every request completes once, by its cookie", "[block-backend]") {
    const DiskAio aio = GENERATE(DiskAio::IoUring, DiskAio::Threads);
    Image image("/tmp", 1u << 20);
    auto backend = open(image.path(), aio);
    std::vector<uint8_t> a(4096, 1), b(8192, 2), in(4096);
    // A write split over two buffers, a plain write, a flush.
    BlockRequest split = transfer(BlockRequest::Kind::Write, 7, 0, a);
    split.buffers = {{a.data(), 1000}, {a.data() + 1000, 3096}};
    backend->submit(std::move(split));
    backend->submit(transfer(BlockRequest::Kind::Write, 9, 65536, b));
    backend->submit(request(BlockRequest::Kind::Flush, 11));
    backend->kick();
    CHECK(reap(*backend, 3) == std::map<uint64_t, int>{{7, 0}, {9, 0}, {11, 0}});
    CHECK(backend->in_flight() == 0);
    backend->submit(transfer(BlockRequest::Kind::Read, 12, 65536, in));
    backend->kick();
    CHECK(reap(*backend, 1) == std::map<uint64_t, int>{{12, 0}});
    CHECK(std::vector<uint8_t>(in.begin(), in.end()) == std::vector<uint8_t>(4096, 2));
    CHECK(image.bytes(0, 4096) == a);
}

TEST_CASE("block backend: a read past the end of a truncated image fails with EIO", "[block-backend]") {
    Image image("/tmp", 1u << 20);
    auto backend = open(image.path(), DiskAio::Threads);
    REQUIRE(::truncate(image.path().c_str(), 4096) == 0);  // someone shrinks it under us
    std::vector<uint8_t> in(8192);
    backend->submit(transfer(BlockRequest::Kind::Read, 1, 0, in));  // the first 4096 bytes arrive, then 0
    backend->kick();
    CHECK(reap(*backend, 1) == std::map<uint64_t, int>{{1, EIO}});
}

TEST_CASE("block backend: write zeroes falls back until the host can do it", "[block-backend]") {
    // tmpfs punches holes but has no FALLOC_FL_ZERO_RANGE: without unmap the
    // ladder ends in written zeros; a disk filesystem zeroes the range.
    const std::string dir = GENERATE(std::string("/dev/shm"), std::string("/tmp"));
    const bool unmap = GENERATE(false, true);
    Image image(dir, 4u << 20);
    auto backend = open(image.path(), DiskAio::IoUring);
    BlockRequest zeroes = request(BlockRequest::Kind::WriteZeroes, 5);
    zeroes.ranges = {{.offset = 4096, .length = 3u << 20, .unmap = unmap}, {.offset = 3600u << 10, .length = 4096}};
    backend->submit(std::move(zeroes));
    BlockRequest discard = request(BlockRequest::Kind::Discard, 6);
    discard.ranges = {{.offset = 3700u << 10, .length = 8192}};
    backend->submit(std::move(discard));
    backend->kick();
    INFO(dir << (unmap ? " unmap" : " no unmap"));
    CHECK(reap(*backend, 2) == std::map<uint64_t, int>{{5, 0}, {6, 0}});
    CHECK(image.bytes(4096, 3u << 20) == std::vector<uint8_t>(3u << 20, 0));
    CHECK(image.bytes(3600u << 10, 4096) == std::vector<uint8_t>(4096, 0));
    CHECK(image.bytes(0, 4096) == std::vector<uint8_t>(4096, 0xa5));  // untouched around them
    CHECK(image.bytes((3u << 20) + 4096, 4096) == std::vector<uint8_t>(4096, 0xa5));
}

TEST_CASE("block backend: O_DIRECT bounces unaligned buffers, within the budget, in order", "[block-backend]") {
    Image image("/tmp", 128u << 20);
    std::unique_ptr<BlockBackend> backend;
    try {
        backend = open(image.path(), DiskAio::IoUring, DiskCache::None);
    } catch (const std::exception&) {
        WARN("no O_DIRECT on /tmp: skipped");
        return;
    }
    // Two transfers of 40 MiB each from buffers off alignment: together
    // over the 64 MiB budget, so the second waits for the first.
    const uint64_t size = 40u << 20;
    std::vector<uint8_t> first(size + 1, 0x11), second(size + 1, 0x22);
    BlockRequest one = transfer(BlockRequest::Kind::Write, 1, 0, first);
    one.buffers = {{first.data() + 1, size}};
    BlockRequest two = transfer(BlockRequest::Kind::Write, 2, size, second);
    two.buffers = {{second.data() + 1, size}};
    backend->submit(std::move(one));
    backend->submit(std::move(two));
    backend->kick();
    CHECK(backend->in_flight() == 2);
    std::vector<uint64_t> order;
    std::vector<BlockCompletion> out;
    while (order.size() < 2) {
        out.clear();
        backend->reap(out, true);
        for (const BlockCompletion& c : out) {
            CHECK(c.error == 0);
            order.push_back(c.cookie);
        }
    }
    CHECK(order == std::vector<uint64_t>{1, 2});
    CHECK(backend->bounced() == 2);
    CHECK(image.bytes(0, 4096) == std::vector<uint8_t>(4096, 0x11));
    CHECK(image.bytes(2 * size - 4096, 4096) == std::vector<uint8_t>(4096, 0x22));

    // A bounced read lands in the unaligned buffer.
    std::vector<uint8_t> in(8193, 0);
    BlockRequest read = transfer(BlockRequest::Kind::Read, 3, size, in);
    read.buffers = {{in.data() + 1, 8192}};
    backend->submit(std::move(read));
    backend->kick();
    CHECK(reap(*backend, 1) == std::map<uint64_t, int>{{3, 0}});
    CHECK(std::count(in.begin() + 1, in.end(), 0x22) == 8192);
    CHECK(in[0] == 0);
}

TEST_CASE("block backend: cancel_all drops everything, and no completion comes later", "[block-backend]") {
    Image image("/tmp", 8u << 20);
    auto backend = open(image.path(), DiskAio::Threads);
    std::vector<std::vector<uint8_t>> buffers(32, std::vector<uint8_t>(64u << 10, 3));
    for (uint64_t i = 0; i < buffers.size(); ++i)
        backend->submit(transfer(BlockRequest::Kind::Write, i, i * (64u << 10), buffers[i]));
    backend->kick();
    backend->cancel_all();
    CHECK(backend->in_flight() == 0);
    std::vector<BlockCompletion> out;
    backend->reap(out, false);
    CHECK(out.empty());
    // The backend is usable again, and slots were all given back.
    for (uint64_t i = 0; i < 64; ++i) backend->submit(request(BlockRequest::Kind::Flush, i));
    CHECK_THROWS_AS(backend->submit(request(BlockRequest::Kind::Flush, 99)), std::logic_error);
    backend->kick();
    CHECK(reap(*backend, 64).size() == 64);
}
