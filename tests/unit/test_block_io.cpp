// The two BlockIo engines behave alike: batches, completions by tag through
// the eventfd, -errno results, the Sync barrier, cancellation.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "temp_file.h"
#include "vmm/backends/block/thread_pool_block_io.h"
#include "vmm/backends/block/uring_block_io.h"
#include "vmm/core/unique_fd.h"

using namespace minikvm;

namespace {

std::unique_ptr<BlockIo> engine(DiskAio kind, int fd) {
    if (kind == DiskAio::Threads) return std::make_unique<ThreadPoolBlockIo>(fd, 3);
    return std::make_unique<UringBlockIo>(fd, 64);
}

// A file of `size` bytes of 0x5a and an engine of `kind` on it.
struct EngineOnFile {
    EngineOnFile(DiskAio kind, size_t size)
        : file(std::vector<uint8_t>(size, 0x5a)), fd(::open(file.path().c_str(), O_RDWR | O_CLOEXEC)),
          io(engine(kind, fd.get())) {}
    TempFile file;
    UniqueFd fd;
    std::unique_ptr<BlockIo> io;
};

std::vector<BlockIoCompletion> reap_all(BlockIo& io) {
    std::vector<BlockIoCompletion> done;
    while (io.in_flight() > 0) io.reap(done, true);
    return done;
}

}  // namespace

TEST_CASE("block io: reads, writes, sync and fallocate complete by tag", "[block-io]") {
    const DiskAio kind = GENERATE(DiskAio::IoUring, DiskAio::Threads);
    TempFile file(std::vector<uint8_t>(64 * 1024, 0x5a));
    UniqueFd fd(::open(file.path().c_str(), O_RDWR | O_CLOEXEC));
    auto io = engine(kind, fd.get());
    INFO(io->name());

    std::vector<uint8_t> out(8192, 0x11), in(8192, 0);
    iovec out_iov[2] = {{out.data(), 4096}, {out.data() + 4096, 4096}};
    iovec in_iov[1] = {{in.data(), in.size()}};
    io->queue({.kind = BlockIoOp::Kind::Write, .offset = 4096, .iov = out_iov, .iov_count = 2, .tag = 1});
    io->queue({.kind = BlockIoOp::Kind::Sync, .barrier = true, .tag = 2});
    CHECK(io->in_flight() == 2);
    io->submit();
    pollfd ready{io->completion_fd(), POLLIN, 0};
    CHECK(::poll(&ready, 1, 5000) == 1);  // the eventfd tells the owner's loop
    std::vector<BlockIoCompletion> done = reap_all(*io);
    REQUIRE(done.size() == 2);
    std::sort(done.begin(), done.end(), [](auto& a, auto& b) { return a.tag < b.tag; });
    CHECK(done[0].result == 8192);
    CHECK(done[1].result == 0);

    io->queue({.kind = BlockIoOp::Kind::Read, .offset = 4096, .iov = in_iov, .iov_count = 1, .tag = 3});
    io->queue({.kind = BlockIoOp::Kind::Fallocate,
               .fallocate_mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
               .offset = 32768,
               .length = 4096,
               .tag = 4});
    io->queue({.kind = BlockIoOp::Kind::Fallocate, .fallocate_mode = 0x7777, .tag = 5});  // nonsense mode
    io->submit();
    done = reap_all(*io);
    REQUIRE(done.size() == 3);
    for (const BlockIoCompletion& c : done) {
        if (c.tag == 3) CHECK(c.result == 8192);
        if (c.tag == 4) CHECK(c.result == 0);
        if (c.tag == 5) CHECK(c.result < 0);  // -errno, not an exception
    }
    CHECK(in == out);
    std::vector<uint8_t> hole(4096);
    REQUIRE(::pread(fd.get(), hole.data(), hole.size(), 32768) == 4096);
    CHECK(hole == std::vector<uint8_t>(4096, 0));
}

TEST_CASE("block io: completions_ready() tells, without reaping, that reap() has something", "[block-io]") {
    EngineOnFile rig(GENERATE(DiskAio::IoUring, DiskAio::Threads), 64 * 1024);
    BlockIo* io = rig.io.get();
    INFO(io->name());
    CHECK_FALSE(io->completions_ready());
    std::vector<uint8_t> in(4096, 0);
    iovec in_iov[1] = {{in.data(), in.size()}};
    io->queue({.kind = BlockIoOp::Kind::Read, .offset = 0, .iov = in_iov, .iov_count = 1, .tag = 7});
    io->submit();
    pollfd ready{io->completion_fd(), POLLIN, 0};
    REQUIRE(::poll(&ready, 1, 5000) == 1);
    // The completion fd is not drained: the answer comes from the rings alone.
    CHECK(io->completions_ready());
    CHECK(io->completions_ready());  // looking takes nothing
    std::vector<BlockIoCompletion> done;
    io->reap(done, false);
    REQUIRE(done.size() == 1);
    CHECK(done[0].tag == 7);
    CHECK(done[0].result == 4096);
    CHECK_FALSE(io->completions_ready());
}

TEST_CASE("block io: with the completion signal off, completions wait in the rings unsignalled", "[block-io]") {
    EngineOnFile rig(GENERATE(DiskAio::IoUring, DiskAio::Threads), 64 * 1024);
    BlockIo* io = rig.io.get();
    INFO(io->name());
    std::vector<uint8_t> in(4096, 0);
    iovec in_iov[1] = {{in.data(), in.size()}};
    pollfd ready{io->completion_fd(), POLLIN, 0};

    io->set_completion_signal(false);
    io->queue({.kind = BlockIoOp::Kind::Read, .offset = 0, .iov = in_iov, .iov_count = 1, .tag = 1});
    io->submit();
    for (int i = 0; i < 5000 && !io->completions_ready(); ++i) ::usleep(1000);
    REQUIRE(io->completions_ready());
    CHECK(::poll(&ready, 1, 0) == 0);  // finished, and the fd says nothing

    // On again: the next completion signals.
    io->set_completion_signal(true);
    io->queue({.kind = BlockIoOp::Kind::Read, .offset = 4096, .iov = in_iov, .iov_count = 1, .tag = 2});
    io->submit();
    REQUIRE(::poll(&ready, 1, 5000) == 1);
    std::vector<BlockIoCompletion> done = reap_all(*io);
    REQUIRE(done.size() == 2);
    CHECK(done[0].result == 4096);
    CHECK(done[1].result == 4096);
}

TEST_CASE("block io: a barrier sync starts after everything before it", "[block-io]") {
    const DiskAio kind = GENERATE(DiskAio::IoUring, DiskAio::Threads);
    TempFile file(std::vector<uint8_t>(1 << 20));
    UniqueFd fd(::open(file.path().c_str(), O_RDWR | O_CLOEXEC));
    auto io = engine(kind, fd.get());
    std::vector<uint8_t> data(64 * 1024, 0x77);
    iovec iov{data.data(), data.size()};
    for (uint64_t i = 0; i < 16; ++i)
        io->queue({.kind = BlockIoOp::Kind::Write, .offset = i * data.size(), .iov = &iov, .iov_count = 1, .tag = i});
    io->queue({.kind = BlockIoOp::Kind::Sync, .barrier = true, .tag = 100});
    io->submit();
    std::vector<BlockIoCompletion> done = reap_all(*io);
    REQUIRE(done.size() == 17);
    CHECK(done.back().tag == 100);
}

TEST_CASE("block io: the thread pool cancels what has not started", "[block-io]") {
    TempFile file(std::vector<uint8_t>(4096));
    UniqueFd fd(::open(file.path().c_str(), O_RDWR | O_CLOEXEC));
    ThreadPoolBlockIo io(fd.get(), 1);
    io.queue({.kind = BlockIoOp::Kind::Sync, .tag = 1});
    io.queue({.kind = BlockIoOp::Kind::Sync, .tag = 2});
    io.cancel_unstarted();  // never submitted: both cancelled
    std::vector<BlockIoCompletion> done = reap_all(io);
    REQUIRE(done.size() == 2);
    CHECK(done[0].result == -ECANCELED);
    CHECK(io.in_flight() == 0);
}
