// virtio-blk: the device against a real queue in guest RAM and a real image
// file, with both I/O engines; and once end to end through the legacy
// virtio-pci transport. What the guest writes is checked in the host file,
// what it reads is checked byte for byte.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "captured_log.h"
#include "recording_signals.h"
#include "ring_driver.h"
#include "temp_file.h"
#include "test_helpers.h"
#include "virtio_pci_rig.h"
#include "virtio/blk_request.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_pci_legacy.h"
#include "virtio/virtqueue.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/unique_fd.h"

using namespace minikvm;
using Driver = test_helpers::RingDriver;
using test_helpers::RecordingSignals;
using LogCapture = test_helpers::CapturedLog;

namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kRamSize = 32 * kMiB;
constexpr uint32_t kPfn = 0x10;
constexpr uint64_t kDataStart = 2 * kMiB;
constexpr uint64_t kImageSectors = 2048;  // 1 MiB
constexpr uint16_t kWrite = split_ring::kDescWrite;
constexpr uint16_t kNext = split_ring::kDescNext;
constexpr uint64_t kAllFeatures = (1ULL << VirtioBlk::kFeatureFlush) | (1ULL << VirtioBlk::kFeatureDiscard) |
                                  (1ULL << VirtioBlk::kFeatureWriteZeroes) | (1ULL << VirtioBlk::kFeatureSegMax) |
                                  (1ULL << VirtioBlk::kFeatureSizeMax) | (1ULL << split_ring::kFeatureIndirectDesc);

std::vector<uint8_t> pattern(size_t size, uint32_t seed) {
    std::vector<uint8_t> bytes(size);
    std::mt19937 random(seed);
    for (uint8_t& byte : bytes) byte = static_cast<uint8_t>(random());
    return bytes;
}

std::vector<uint8_t> file_bytes(const std::string& path, uint64_t offset, size_t size) {
    std::vector<uint8_t> bytes(size);
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(::pread(fd.get(), bytes.data(), size, static_cast<off_t>(offset)) == static_cast<ssize_t>(size));
    return bytes;
}

uint64_t file_size(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    return static_cast<uint64_t>(::lseek(fd.get(), 0, SEEK_END));
}

// One descriptor of a request: guest address, length, device-writable?
struct Piece {
    uint64_t address;
    uint32_t length;
    bool writable;
};

// A virtio-blk device on a temp image with its queue placed and activated,
// and the driver's side of the ring.
struct Rig {
    explicit Rig(DiskConfig overrides = {}, uint64_t features = kAllFeatures,
                 std::vector<uint8_t> contents = std::vector<uint8_t>(kImageSectors * 512))
        : file(contents) {
        quiet.emplace(spdlog::level::warn);
        DiskConfig config = overrides;
        config.path = file.path();
        blk = std::make_unique<VirtioBlk>("virtio-blk-test", DiskImage::open(config), config, loop);
        queues.emplace_back(memory, "requestq");
        queues[0].set_features(features);
        REQUIRE(queues[0].configure(kPfn, VirtioBlk::kQueueSize));
        // The test stands in for the transport, which holds the device's
        // lock around every call (completions take it on the event loop).
        std::lock_guard lock(blk->device_lock());
        blk->activate(features, queues, signals);
    }
    ~Rig() {
        if (blk) reset();
    }
    void reset() {
        std::lock_guard lock(blk->device_lock());
        blk->reset();
    }

    // Guest memory for a buffer; `misalign` shifts it off 512-byte alignment.
    uint64_t allocate(uint64_t size, uint64_t misalign = 0) {
        next_free = (next_free + 511) / 512 * 512 + misalign;
        const uint64_t address = next_free;
        next_free += size;
        REQUIRE(next_free < kRamSize);
        return address;
    }
    uint64_t header(uint32_t type, uint64_t sector) {
        const uint64_t address = allocate(16);
        test_helpers::put_le(memory, address, type, 4);
        test_helpers::put_le(memory, address + 4, 0, 4);
        test_helpers::put_le(memory, address + 8, sector, 8);
        return address;
    }
    uint64_t status_byte() {
        const uint64_t address = allocate(1);
        test_helpers::put_le(memory, address, 0xff, 1);
        return address;
    }
    // Writes the chain into the descriptor table and makes it available.
    uint16_t offer(const std::vector<Piece>& pieces) {
        const auto head = static_cast<uint16_t>(next_descriptor % VirtioBlk::kQueueSize);
        for (size_t i = 0; i < pieces.size(); ++i) {
            const auto index = static_cast<uint16_t>((next_descriptor + i) % VirtioBlk::kQueueSize);
            const bool last = i + 1 == pieces.size();
            uint16_t flags = static_cast<uint16_t>((pieces[i].writable ? kWrite : 0) | (last ? 0 : kNext));
            driver.descriptor(index, pieces[i].address, pieces[i].length, flags,
                              static_cast<uint16_t>((index + 1) % VirtioBlk::kQueueSize));
        }
        next_descriptor += static_cast<uint32_t>(pieces.size());
        driver.offer(head);
        return head;
    }
    void kick() {
        std::lock_guard lock(blk->device_lock());
        blk->queue_notified(VirtioBlk::kRequestQueue);
    }
    void run() {
        kick();
        blk->wait_idle();
    }
    uint8_t status_at(uint64_t address) const {
        return static_cast<uint8_t>(test_helpers::get_le(memory, address, 1));
    }
    std::vector<uint8_t> guest(uint64_t address, size_t size) const {
        std::vector<uint8_t> bytes(size);
        REQUIRE(memory.read(address, bytes));
        return bytes;
    }
    // The used element for `head`, searched among the first `count` entries.
    std::optional<uint32_t> used_length(uint16_t head) const {
        for (uint16_t i = 0; i < driver.used_index(); ++i)
            if (driver.used_element(i).first == head) return driver.used_element(i).second;
        return std::nullopt;
    }

    // A simple write: data from `bytes` at `sector`, in `pieces` descriptors.
    struct Done {
        uint16_t head;
        uint64_t status;
        uint64_t data;
    };
    Done write(uint64_t sector, const std::vector<uint8_t>& bytes, size_t pieces = 1, uint64_t misalign = 0) {
        std::vector<Piece> chain{{header(blk::kTypeOut, sector), 16, false}};
        const uint64_t data = allocate(bytes.size(), misalign);
        REQUIRE(memory.write(data, bytes));
        const uint64_t piece = bytes.size() / pieces;
        for (size_t i = 0; i < pieces; ++i)
            chain.push_back({data + i * piece, static_cast<uint32_t>(i + 1 == pieces ? bytes.size() - i * piece : piece),
                             false});
        const uint64_t status = status_byte();
        chain.push_back({status, 1, true});
        return {offer(chain), status, data};
    }
    Done read(uint64_t sector, size_t size, size_t pieces = 1, uint64_t misalign = 0) {
        std::vector<Piece> chain{{header(blk::kTypeIn, sector), 16, false}};
        const uint64_t data = allocate(size, misalign);
        std::vector<uint8_t> junk(size, 0xee);
        REQUIRE(memory.write(data, junk));
        const uint64_t piece = size / pieces;
        for (size_t i = 0; i < pieces; ++i)
            chain.push_back({data + i * piece, static_cast<uint32_t>(i + 1 == pieces ? size - i * piece : piece), true});
        const uint64_t status = status_byte();
        chain.push_back({status, 1, true});
        return {offer(chain), status, data};
    }
    Done simple(uint32_t type, uint64_t sector = 0) {
        const uint64_t status = status_byte();
        return {offer({{header(type, sector), 16, false}, {status, 1, true}}), status, 0};
    }

    std::optional<LogCapture> quiet;  // the device's "opened" line
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    TempFile file;
    EventLoop loop;
    std::vector<VirtQueue> queues;
    RecordingSignals signals;
    std::unique_ptr<VirtioBlk> blk;
    Driver driver{memory, kPfn, VirtioBlk::kQueueSize};
    uint64_t next_free = kDataStart;
    uint32_t next_descriptor = 0;
};

DiskConfig with(DiskAio aio, DiskCache cache = DiskCache::Writeback, bool read_only = false) {
    DiskConfig config;
    config.aio = aio;
    config.cache = cache;
    config.read_only = read_only;
    return config;
}

uint32_t config_u32(VirtioBlk& blk, uint32_t offset) {
    uint8_t bytes[4] = {};
    blk.read_config(offset, bytes);
    return test_helpers::from_le(bytes);
}

}  // namespace

TEST_CASE("virtio-blk: identity, features and configuration space", "[virtio-blk]") {
    Rig rig;
    VirtioBlk& blk = *rig.blk;
    CHECK(blk.device_type() == VirtioDeviceType::Block);
    CHECK(blk.queue_count() == 1);
    CHECK(blk.queue_max_size(0) == 256);
    CHECK(blk.config_size() == 60);
    const uint64_t features = blk.device_features();
    for (unsigned feature : {1u, 2u, 6u, 9u, 13u, 14u, 28u, 29u}) CHECK((features >> feature & 1) == 1);
    CHECK((features >> VirtioBlk::kFeatureRo & 1) == 0);

    // Capacity as a 64-bit value read byte by byte (as Linux's legacy driver does).
    uint64_t capacity = 0;
    for (uint32_t i = 0; i < 8; ++i) {
        uint8_t byte = 0;
        blk.read_config(i, std::span(&byte, 1));
        capacity |= uint64_t{byte} << (8 * i);
    }
    CHECK(capacity == kImageSectors);
    CHECK(config_u32(blk, VirtioBlk::kConfigSizeMax) == VirtioBlk::kSizeMax);
    CHECK(config_u32(blk, VirtioBlk::kConfigSegMax) == 254);
    CHECK(config_u32(blk, VirtioBlk::kConfigGeometry) == 0);
    CHECK(config_u32(blk, VirtioBlk::kConfigBlkSize) == 512);
    CHECK(config_u32(blk, VirtioBlk::kConfigTopology) == 0);
    CHECK(config_u32(blk, VirtioBlk::kConfigWriteback) == 0);
    CHECK(config_u32(blk, 36) == VirtioBlk::kMaxDiscardSectors);
    CHECK(config_u32(blk, 40) == VirtioBlk::kMaxDiscardSegments);
    CHECK(config_u32(blk, 44) == 8);  // 4 KiB
    CHECK(config_u32(blk, 48) == VirtioBlk::kMaxWriteZeroesSectors);
    CHECK(config_u32(blk, 52) == VirtioBlk::kMaxWriteZeroesSegments);
    CHECK(config_u32(blk, 56) == 1);  // write_zeroes_may_unmap, then unused1[3]

    LogCapture log;
    const uint8_t junk[4] = {1, 2, 3, 4};
    blk.write_config(VirtioBlk::kConfigCapacity, junk);
    CHECK(config_u32(blk, VirtioBlk::kConfigCapacity) == kImageSectors);
    CHECK(log.count("warning", "read-only configuration") == 1);
}

TEST_CASE("virtio-blk: writes reach the file and read back byte-exact", "[virtio-blk]") {
    const DiskAio aio = GENERATE(DiskAio::IoUring, DiskAio::Threads);
    Rig rig(with(aio));
    INFO("engine " << rig.blk->io_engine());
    const std::vector<uint8_t> data = pattern(64 * 1024, 1);
    Rig::Done write = rig.write(100, data, 3);  // three descriptors of odd sizes
    rig.run();
    CHECK(rig.status_at(write.status) == blk::kStatusOk);
    CHECK(rig.used_length(write.head) == 1u);  // a write writes only the status
    CHECK(file_bytes(rig.file.path(), 100 * 512, data.size()) == data);
    CHECK(rig.signals.used >= 1);

    Rig::Done read = rig.read(100, data.size(), 5);
    rig.run();
    CHECK(rig.status_at(read.status) == blk::kStatusOk);
    CHECK(rig.used_length(read.head) == data.size() + 1);  // data + status
    CHECK(rig.guest(read.data, data.size()) == data);
    CHECK(rig.blk->stats().errors == 0);
}

TEST_CASE("virtio-blk: cache=none serves aligned buffers directly and bounces the others", "[virtio-blk]") {
    const DiskAio aio = GENERATE(DiskAio::IoUring, DiskAio::Threads);
    TempFile probe(std::vector<uint8_t>(4096));
    DiskConfig direct;
    direct.path = probe.path();
    direct.cache = DiskCache::None;
    try {
        DiskImage::open(direct);
    } catch (const std::exception&) {
        WARN("no O_DIRECT on this filesystem: skipped");
        return;
    }
    Rig rig(with(aio, DiskCache::None));
    const std::vector<uint8_t> data = pattern(16 * 1024, 2);

    Rig::Done aligned = rig.write(8, data, 4);
    rig.run();
    CHECK(rig.status_at(aligned.status) == blk::kStatusOk);
    CHECK(rig.blk->stats().bounced == 0);

    const std::vector<uint8_t> other = pattern(8 * 1024, 3);
    Rig::Done odd = rig.write(64, other, 3, 100);  // buffers off alignment, odd lengths
    rig.run();
    CHECK(rig.status_at(odd.status) == blk::kStatusOk);
    CHECK(rig.blk->stats().bounced == 1);
    CHECK(file_bytes(rig.file.path(), 64 * 512, other.size()) == other);

    Rig::Done read = rig.read(64, other.size(), 7, 3);
    rig.run();
    CHECK(rig.status_at(read.status) == blk::kStatusOk);
    CHECK(rig.guest(read.data, other.size()) == other);
    CHECK(rig.blk->stats().bounced == 2);
    Rig::Done back = rig.read(8, data.size());
    rig.run();
    CHECK(rig.guest(back.data, data.size()) == data);
}

TEST_CASE("virtio-blk: 80 requests in flight at once all complete correctly", "[virtio-blk]") {
    // 80 three-descriptor chains fill 240 of the 256 descriptors.
    const DiskAio aio = GENERATE(DiskAio::IoUring, DiskAio::Threads);
    Rig rig(with(aio));
    std::vector<Rig::Done> writes;
    for (uint32_t i = 0; i < 80; ++i) writes.push_back(rig.write(i * 16, pattern(4096, 100 + i)));
    rig.run();  // one kick, one batch
    for (const Rig::Done& w : writes) CHECK(rig.status_at(w.status) == blk::kStatusOk);
    std::vector<Rig::Done> reads;
    for (uint32_t i = 0; i < 80; ++i) reads.push_back(rig.read(i * 16, 4096));
    rig.run();
    for (uint32_t i = 0; i < 80; ++i) {
        CHECK(rig.status_at(reads[i].status) == blk::kStatusOk);
        CHECK(rig.guest(reads[i].data, 4096) == pattern(4096, 100 + i));
    }
    CHECK(rig.driver.used_index() == 160);
    CHECK(rig.blk->stats().completed == 160);
}

TEST_CASE("virtio-blk: a flush completes after the writes queued before it", "[virtio-blk]") {
    const DiskAio aio = GENERATE(DiskAio::IoUring, DiskAio::Threads);
    Rig rig(with(aio));
    std::vector<uint16_t> writes;
    for (uint32_t i = 0; i < 32; ++i) writes.push_back(rig.write(i * 64, pattern(32 * 1024, i)).head);
    Rig::Done flush = rig.simple(blk::kTypeFlush);
    rig.run();
    CHECK(rig.status_at(flush.status) == blk::kStatusOk);
    CHECK(rig.used_length(flush.head) == 1u);
    // The flush is a barrier: its used entry comes after every earlier write's.
    REQUIRE(rig.driver.used_index() == 33);
    CHECK(rig.driver.used_element(32).first == flush.head);
    for (uint32_t i = 0; i < 32; ++i) CHECK(file_bytes(rig.file.path(), i * 64 * 512, 32 * 1024) == pattern(32 * 1024, i));

    // The legacy FLUSH_OUT works the same.
    Rig::Done legacy = rig.simple(blk::kTypeFlushOut);
    rig.run();
    CHECK(rig.status_at(legacy.status) == blk::kStatusOk);
}

TEST_CASE("virtio-blk: GET_ID returns the serial NUL-padded", "[virtio-blk]") {
    DiskConfig config;
    config.serial = "MINIKVM-SN-42";
    Rig rig(config);
    const uint64_t id = rig.allocate(20);
    REQUIRE(rig.memory.write(id, std::vector<uint8_t>(20, 0xaa)));
    const uint64_t status = rig.status_byte();
    const uint16_t head = rig.offer({{rig.header(blk::kTypeGetId, 0), 16, false}, {id, 20, true}, {status, 1, true}});
    rig.run();
    CHECK(rig.status_at(status) == blk::kStatusOk);
    CHECK(rig.used_length(head) == 21u);
    std::vector<uint8_t> expected(20, 0);
    std::string serial = "MINIKVM-SN-42";
    std::copy(serial.begin(), serial.end(), expected.begin());
    CHECK(rig.guest(id, 20) == expected);
}

TEST_CASE("virtio-blk: a read-only disk offers RO and refuses every write", "[virtio-blk]") {
    std::vector<uint8_t> contents = pattern(kImageSectors * 512, 7);
    const uint64_t features = 1ULL << VirtioBlk::kFeatureRo | 1ULL << VirtioBlk::kFeatureFlush;
    Rig rig(with(DiskAio::IoUring, DiskCache::Writeback, true), features, contents);
    CHECK((rig.blk->device_features() >> VirtioBlk::kFeatureRo & 1) == 1);
    CHECK((rig.blk->device_features() >> VirtioBlk::kFeatureDiscard & 1) == 0);
    CHECK((rig.blk->device_features() >> VirtioBlk::kFeatureWriteZeroes & 1) == 0);
    LogCapture log;
    Rig::Done write = rig.write(0, std::vector<uint8_t>(4096, 0));
    Rig::Done flush = rig.simple(blk::kTypeFlush);
    Rig::Done read = rig.read(0, 4096);
    rig.run();
    CHECK(rig.status_at(write.status) == blk::kStatusIoErr);
    CHECK(rig.status_at(flush.status) == blk::kStatusOk);
    CHECK(rig.status_at(read.status) == blk::kStatusOk);
    CHECK(rig.guest(read.data, 4096) == std::vector<uint8_t>(contents.begin(), contents.begin() + 4096));
    CHECK(file_bytes(rig.file.path(), 0, contents.size()) == contents);
    CHECK(log.count("warning", "write to a read-only disk") == 1);
}

TEST_CASE("virtio-blk: bad requests complete with IOERR or UNSUPP and touch nothing on the host", "[virtio-blk]") {
    Rig rig;
    LogCapture log;
    // Past the end, and a sector that would overflow 64 bits when scaled.
    Rig::Done beyond = rig.write(kImageSectors - 1, std::vector<uint8_t>(1024, 0x11));
    Rig::Done overflow = rig.read(UINT64_MAX / 2, 512);
    Rig::Done scsi = rig.simple(blk::kTypeScsiCmd);
    // A read whose data buffers are device-readable: an IN with readable data.
    const uint64_t data = rig.allocate(512);
    const uint64_t status = rig.status_byte();
    const uint16_t wrong_side =
        rig.offer({{rig.header(blk::kTypeIn, 0), 16, false}, {data, 512, false}, {status, 1, true}});
    // No status byte at all.
    const uint16_t no_status = rig.offer({{rig.header(blk::kTypeOut, 0), 16, false}, {rig.allocate(512), 512, false}});
    rig.run();

    CHECK(rig.status_at(beyond.status) == blk::kStatusIoErr);
    CHECK(rig.used_length(beyond.head) == 1u);
    CHECK(rig.status_at(overflow.status) == blk::kStatusIoErr);
    CHECK(rig.used_length(overflow.head) == 513u);       // zeroed data + status
    CHECK(rig.guest(overflow.data, 512) == std::vector<uint8_t>(512, 0));
    CHECK(rig.status_at(scsi.status) == blk::kStatusUnsupp);
    CHECK(rig.status_at(status) == blk::kStatusIoErr);
    CHECK(rig.used_length(wrong_side) == 1u);
    CHECK(rig.used_length(no_status) == 0u);
    CHECK(file_bytes(rig.file.path(), (kImageSectors - 1) * 512, 512) == std::vector<uint8_t>(512, 0));
    CHECK(file_size(rig.file.path()) == kImageSectors * 512);
    CHECK(rig.signals.broken_count() == 0);  // request errors, not ring-rule ones
    CHECK(log.count("warning", "past the end of the disk") == 2);
    CHECK(log.count("warning", "no device-writable byte") == 1);
    CHECK(log.count("info", "SCSI_CMD") == 1);
    CHECK(rig.blk->stats().errors == 4);
    CHECK(rig.blk->stats().unsupported == 1);
}

TEST_CASE("virtio-blk: write zeroes and discard", "[virtio-blk]") {
    const DiskAio aio = GENERATE(DiskAio::IoUring, DiskAio::Threads);
    std::vector<uint8_t> contents = pattern(kImageSectors * 512, 9);
    Rig rig(with(aio), kAllFeatures, contents);
    auto segment_request = [&](uint32_t type, std::vector<blk::Segment> segments) {
        const uint64_t list = rig.allocate(16 * segments.size());
        for (size_t i = 0; i < segments.size(); ++i) {
            test_helpers::put_le(rig.memory, list + 16 * i, segments[i].sector, 8);
            test_helpers::put_le(rig.memory, list + 16 * i + 8, segments[i].sectors, 4);
            test_helpers::put_le(rig.memory, list + 16 * i + 12, segments[i].unmap ? 1 : 0, 4);
        }
        const uint64_t status = rig.status_byte();
        rig.offer({{rig.header(type, 0), 16, false},
                   {list, static_cast<uint32_t>(16 * segments.size()), false},
                   {status, 1, true}});
        return status;
    };
    const uint64_t zeroes = segment_request(blk::kTypeWriteZeroes, {{16, 8, false}, {64, 16, true}});
    const uint64_t discard = segment_request(blk::kTypeDiscard, {{1024, 64, false}});
    const uint64_t beyond = segment_request(blk::kTypeDiscard, {{kImageSectors - 4, 8, false}});
    rig.run();
    CHECK(rig.status_at(zeroes) == blk::kStatusOk);
    CHECK(rig.status_at(discard) == blk::kStatusOk);
    CHECK(rig.status_at(beyond) == blk::kStatusIoErr);
    CHECK(file_bytes(rig.file.path(), 16 * 512, 8 * 512) == std::vector<uint8_t>(8 * 512, 0));
    CHECK(file_bytes(rig.file.path(), 64 * 512, 16 * 512) == std::vector<uint8_t>(16 * 512, 0));
    // Neighbours untouched; the file keeps its size.
    CHECK(file_bytes(rig.file.path(), 24 * 512, 512) ==
          std::vector<uint8_t>(contents.begin() + 24 * 512, contents.begin() + 25 * 512));
    CHECK(file_bytes(rig.file.path(), 15 * 512, 512) ==
          std::vector<uint8_t>(contents.begin() + 15 * 512, contents.begin() + 16 * 512));
    CHECK(file_size(rig.file.path()) == kImageSectors * 512);
    const uint64_t end = (kImageSectors - 4) * 512;
    CHECK(file_bytes(rig.file.path(), end, 2048) == std::vector<uint8_t>(contents.begin() + static_cast<long>(end),
                                                                         contents.end()));
}

TEST_CASE("virtio-blk: reset waits for I/O in flight; nothing reaches the guest afterwards", "[virtio-blk]") {
    const DiskAio aio = GENERATE(DiskAio::IoUring, DiskAio::Threads);
    Rig rig(with(aio));
    std::vector<Rig::Done> reads;
    for (uint32_t i = 0; i < 64; ++i) reads.push_back(rig.read(i * 16, 8192));
    rig.kick();
    rig.reset();
    const uint16_t used = rig.driver.used_index();
    std::vector<std::vector<uint8_t>> after;
    for (const Rig::Done& read : reads) after.push_back(rig.guest(read.data, 8192));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(rig.driver.used_index() == used);
    for (size_t i = 0; i < reads.size(); ++i) CHECK(rig.guest(reads[i].data, 8192) == after[i]);
    // Kicks after reset are ignored; a second reset is harmless.
    rig.kick();
    rig.reset();
    CHECK(rig.driver.used_index() == used);
}

TEST_CASE("virtio-blk: requests made available before DRIVER_OK are served at activation", "[virtio-blk]") {
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    TempFile file(pattern(kImageSectors * 512, 5));
    EventLoop loop;
    DiskConfig config;
    config.path = file.path();
    VirtioBlk blk("early", DiskImage::open(config), config, loop);
    std::vector<VirtQueue> queues;
    queues.emplace_back(memory, "requestq");
    REQUIRE(queues[0].configure(kPfn, VirtioBlk::kQueueSize));
    Driver driver{memory, kPfn, VirtioBlk::kQueueSize};
    test_helpers::put_le(memory, kDataStart, blk::kTypeIn, 4);
    test_helpers::put_le(memory, kDataStart + 8, 0, 8);
    driver.descriptor(0, kDataStart, 16, kNext, 1);
    driver.descriptor(1, kDataStart + 4096, 513, kWrite);
    driver.offer(0);
    RecordingSignals signals;
    {
        std::lock_guard lock(blk.device_lock());  // as the transport would
        blk.activate(0, queues, signals);
    }
    blk.wait_idle();
    CHECK(driver.used_element(0) == std::pair<uint32_t, uint32_t>{0, 513});
    CHECK(test_helpers::get_le(memory, kDataStart + 4096 + 512, 1) == blk::kStatusOk);
    {
        std::lock_guard lock(blk.device_lock());
        blk.reset();
    }
}

TEST_CASE("virtio-blk: ring-rule violations stop the device through the transport", "[virtio-blk]") {
    Rig rig;
    LogCapture log;
    rig.driver.descriptor(0, kDataStart, 16, kNext, 0);  // a chain that loops
    rig.driver.offer(0);
    rig.run();
    REQUIRE(rig.signals.broken_count() == 1);
    CHECK(rig.signals.broken[0].find("2.7.5.2") != std::string::npos);
}

TEST_CASE("virtio-blk: a head made available twice while in flight breaks the device", "[virtio-blk]") {
    Rig rig(with(DiskAio::Threads));
    LogCapture log;
    Rig::Done read = rig.read(0, 512 * 64);
    rig.driver.offer(read.head);  // the same chain again, still in use
    rig.run();
    CHECK(rig.signals.broken_count() == 1);
    CHECK(rig.driver.used_index() == 1);
}

TEST_CASE("virtio-blk: a head offered again and again stops at a full table in flight", "[virtio-blk]") {
    // Each copy of a head still in use is refused and never completed, so a
    // driver repeating it would keep the device popping for as long as it
    // liked; the queue stops it once a table's worth is outstanding.
    Rig rig(with(DiskAio::Threads));
    LogCapture log;
    Rig::Done read = rig.read(0, 512);
    for (unsigned i = 1; i < VirtioBlk::kQueueSize; ++i) rig.driver.offer(read.head);
    rig.run();
    REQUIRE(rig.driver.used_index() == 1);  // the read itself
    CHECK_FALSE(rig.queues[0].broken());
    rig.driver.offer(read.head);  // in use again
    rig.driver.offer(read.head);  // one past the table
    rig.run();
    CHECK(rig.queues[0].error() == VirtQueueError::TooManyInFlight);
    CHECK(rig.signals.broken_count() >= 1);
}

TEST_CASE("virtio-blk: end to end through the legacy virtio-pci transport", "[virtio-blk]") {
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    std::vector<uint8_t> contents = pattern(kImageSectors * 512, 11);
    TempFile file(contents);
    EventLoop loop;
    DiskConfig config;
    config.path = file.path();
    config.serial = "e2e";
    VirtioBlk blk("virtio-blk-e2e", DiskImage::open(config), config, loop);
    test_helpers::FakeIrq irq;
    VirtioPciLegacy transport(blk, memory, "virtio-blk-e2e");
    transport.connect_intx(irq);
    auto write = [&](uint32_t offset, uint32_t width, uint32_t value) {
        virtio_pci_rig::reg_write(transport, offset, width, value);
    };
    auto read = [&](uint32_t offset, uint32_t width) { return virtio_pci_rig::reg_read(transport, offset, width); };
    CHECK(VirtioPciLegacy::identity_for(blk.kind()).device_id == 0x1001);
    CHECK(transport.bar_size() == 128);  // 20 + 60 bytes of configuration
    write(VirtioPciLegacy::kStatus, 1, 0);
    write(VirtioPciLegacy::kStatus, 1, 3);
    const uint32_t offered = read(VirtioPciLegacy::kHostFeatures, 4);
    CHECK(offered == static_cast<uint32_t>(blk.device_features()));
    write(VirtioPciLegacy::kGuestFeatures, 4, offered);
    CHECK(read(VirtioPciLegacy::kConfig + VirtioBlk::kConfigCapacity, 4) == kImageSectors);
    write(VirtioPciLegacy::kQueueSelect, 2, 0);
    CHECK(read(VirtioPciLegacy::kQueueSize, 2) == 256);
    write(VirtioPciLegacy::kQueuePfn, 4, kPfn);
    write(VirtioPciLegacy::kStatus, 1, 7);

    Driver driver{memory, kPfn, VirtioBlk::kQueueSize};
    test_helpers::put_le(memory, kDataStart, blk::kTypeIn, 4);
    test_helpers::put_le(memory, kDataStart + 8, 3, 8);
    driver.descriptor(0, kDataStart, 16, kNext, 1);
    driver.descriptor(1, kDataStart + 4096, 1024, kWrite | kNext, 2);
    driver.descriptor(2, kDataStart + 8192, 1, kWrite);
    driver.offer(0);
    write(VirtioPciLegacy::kQueueNotify, 2, 0);
    blk.wait_idle();
    CHECK(driver.used_element(0) == std::pair<uint32_t, uint32_t>{0, 1025});
    std::vector<uint8_t> got(1024);
    REQUIRE(memory.read(kDataStart + 4096, got));
    CHECK(got == std::vector<uint8_t>(contents.begin() + 3 * 512, contents.begin() + 5 * 512));
    CHECK(read(VirtioPciLegacy::kIsr, 1) == VirtioPciLegacy::kIsrQueue);
    write(VirtioPciLegacy::kStatus, 1, 0);  // reset with nothing in flight
    CHECK(transport.status() == 0);
}
