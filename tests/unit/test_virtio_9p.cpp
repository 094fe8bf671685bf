// virtio-9p: the front end alone against a real queue in guest RAM, with a
// real server on a temporary directory behind it.

#include <catch2/catch.hpp>

#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "p9_client.h"
#include "recording_signals.h"
#include "ring_driver.h"
#include "virtio/split_ring.h"
#include "virtio/virtio_9p.h"
#include "virtio/virtio_pci_legacy.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/guest_memory.h"

using namespace minikvm;
using namespace test_helpers;

namespace {

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint32_t kPfn = 0x10;
constexpr uint64_t kRequests = 2 * kMiB;  // request i at kRequests + i * 64 KiB
constexpr uint64_t kReplies = 8 * kMiB;   // its reply buffer at kReplies + i * 64 KiB
constexpr uint32_t kSlot = 64 << 10;
constexpr uint16_t kWrite = split_ring::kDescWrite;
constexpr uint16_t kNext = split_ring::kDescNext;

struct Rig {
    Rig() {
        queues.emplace_back(memory, "rq");
        queues[0].set_features(0);
        REQUIRE(queues[0].configure(kPfn, Virtio9p::kQueueSize));
        std::lock_guard lock(device.device_lock());
        device.activate(device.device_features(), queues, signals);
    }
    ~Rig() {
        std::lock_guard lock(device.device_lock());
        device.reset();
    }
    std::unique_ptr<p9::Server> make_server(const std::string& root) {
        return std::make_unique<p9::Server>(p9::SharedTree::open(root), p9::ServerOptions{}, "p9");
    }
    // Puts `message` in chain `slot` (descriptors 2*slot, 2*slot+1) with a
    // reply buffer of `room` bytes, and offers it.
    void post(unsigned slot, const std::vector<uint8_t>& message, uint32_t room = kSlot) {
        const uint16_t d = static_cast<uint16_t>(2 * slot);
        REQUIRE(memory.write(kRequests + slot * kSlot, message));
        driver.descriptor(d, kRequests + slot * kSlot, static_cast<uint32_t>(message.size()), kNext, d + 1);
        driver.descriptor(d + 1, kReplies + slot * kSlot, room, kWrite);
        driver.offer(d);
    }
    void kick() {
        {
            std::lock_guard lock(device.device_lock());
            device.queue_notified(0);
        }
        device.wait_idle();
    }
    P9Reply reply(unsigned slot, uint32_t length) const {
        std::vector<uint8_t> bytes(length);
        REQUIRE(memory.read(kReplies + slot * kSlot, bytes));
        return P9Reply{bytes};
    }

    TempDirectory dir;
    GuestMemory memory = GuestMemory::allocate(32 * kMiB);
    EventLoop loop;
    std::vector<VirtQueue> queues;
    RecordingSignals signals;
    Virtio9p device{"virtio-9p-test", "hostshare", make_server(dir.path), loop};
    RingDriver driver{memory, kPfn, Virtio9p::kQueueSize};
};

}  // namespace

TEST_CASE("virtio-9p: identity and the mount tag in the configuration", "[virtio-9p]") {
    TempDirectory dir;
    EventLoop loop;
    Virtio9p device("v", "my-tag", std::make_unique<p9::Server>(p9::SharedTree::open(dir.path), p9::ServerOptions{}, "s"),
                    loop);
    CHECK(device.device_type() == VirtioDeviceType::NinePTransport);
    CHECK(device.kind().pci_device_id == 0x1009);
    CHECK((device.device_features() & 1) == 1);  // MOUNT_TAG
    CHECK(VirtioPciLegacy::identity_for(device.kind()).subsystem_id == 9);
    REQUIRE(device.config_size() == 2 + 6);
    std::vector<uint8_t> config(8);
    device.read_config(0, config);
    CHECK(config[0] == 6);
    CHECK(config[1] == 0);
    CHECK(std::string(config.begin() + 2, config.end()) == "my-tag");
    std::vector<uint8_t> tail(3);
    device.read_config(5, tail);
    CHECK(std::string(tail.begin(), tail.end()) == "tag");
}

TEST_CASE("virtio-9p: a session through the ring, replies published with their lengths", "[virtio-9p]") {
    Rig rig;
    std::ofstream(rig.dir.path + "/file") << "contents";
    rig.post(0, P9Message(p9::Type::Tversion, p9::kNoTag).u32(512 << 10).str("9P2000.L").bytes());
    rig.kick();
    REQUIRE(rig.driver.used_index() == 1);
    auto [id, length] = rig.driver.used_element(0);
    CHECK(id == 0);
    P9Reply version = rig.reply(0, length);
    CHECK(version.type() == p9::Type::Rversion);

    // One request per kick where one needs the other's answer: requests
    // run in parallel, and a client waits for Rattach before using its fid.
    rig.post(1, P9Message(p9::Type::Tattach, 5).u32(0).u32(p9::kNoFid).str("").str("").u32(0).bytes());
    rig.kick();
    rig.post(2, P9Message(p9::Type::Twalk, 6).u32(0).u32(1).u16(1).str("file").bytes());
    rig.kick();
    REQUIRE(rig.driver.used_index() == 3);
    rig.post(3, P9Message(p9::Type::Tlopen, 7).u32(1).u32(0).bytes());
    rig.kick();
    rig.post(4, P9Message(p9::Type::Tread, 8).u32(1).u64(0).u32(100).bytes());
    rig.kick();
    REQUIRE(rig.driver.used_index() == 5);
    auto [read_id, read_length] = rig.driver.used_element(4);
    CHECK(read_id == 8);
    P9Reply read = rig.reply(4, read_length);
    REQUIRE(read.type() == p9::Type::Rread);
    CHECK(read.tag() == 8);
    CHECK(read_length == p9::kHeaderSize + 4 + 8);
    CHECK(rig.signals.used >= 1);
}

TEST_CASE("virtio-9p: Tread and Twrite data cross chains cut anywhere, the 9P heads included", "[virtio-9p]") {
    Rig rig;
    std::string text;
    for (int i = 0; i < 9000; ++i) text += static_cast<char>('a' + i % 26);
    std::ofstream(rig.dir.path + "/file") << text;
    rig.post(0, P9Message(p9::Type::Tversion, p9::kNoTag).u32(64 << 10).str("9P2000.L").bytes());
    rig.kick();
    rig.post(1, P9Message(p9::Type::Tattach, 1).u32(0).u32(p9::kNoFid).str("").str("").u32(0).bytes());
    rig.kick();
    rig.post(2, P9Message(p9::Type::Twalk, 2).u32(0).u32(1).u16(1).str("file").bytes());
    rig.kick();
    rig.post(3, P9Message(p9::Type::Tlopen, 3).u32(1).u32(2).bytes());
    rig.kick();
    REQUIRE(rig.driver.used_index() == 4);

    // A chain of pieces: descriptors from 20 on, `readable` pieces of the
    // request at kRequests, then `writable` pieces of room at kReplies.
    auto post_pieces = [&](const std::vector<uint8_t>& message, std::vector<uint32_t> readable,
                           std::vector<uint32_t> writable) {
        REQUIRE(rig.memory.write(kRequests, message));
        uint16_t d = 20;
        uint64_t at = kRequests;
        for (uint32_t piece : readable) {
            rig.driver.descriptor(d, at, piece, kNext, d + 1);
            at += piece;
            ++d;
        }
        at = kReplies;
        for (size_t i = 0; i < writable.size(); ++i) {
            const bool last = i + 1 == writable.size();
            rig.driver.descriptor(d, at, writable[i], static_cast<uint16_t>(kWrite | (last ? 0 : kNext)), d + 1);
            at += writable[i];
            ++d;
        }
        rig.driver.offer(20);
        rig.kick();
    };
    // Rread's 11-byte head cut after 5 bytes, its data cut again.
    REQUIRE(rig.memory.write(kReplies, std::vector<uint8_t>(9100, 0xee)));
    post_pieces(P9Message(p9::Type::Tread, 4).u32(1).u64(100).u32(9000).bytes(), {23}, {5, 4000, 5000});
    REQUIRE(rig.driver.used_index() == 5);
    CHECK(rig.driver.used_element(4) == std::pair<uint32_t, uint32_t>{20, p9::kReadHeader + 8900});
    P9Reply read = rig.reply(0, p9::kReadHeader + 8901);
    REQUIRE(read.type() == p9::Type::Rread);
    CHECK(read.tag() == 4);
    CHECK(p9::WireReader(read.bytes).u32() == p9::kReadHeader + 8900);
    p9::WireReader body = read.body();
    REQUIRE(body.u32() == 8900);
    const auto data = body.bytes(8900);
    CHECK(std::string(data.begin(), data.end()) == text.substr(100));
    CHECK(body.u8() == 0xee);  // nothing past the count

    // Twrite with its 23-byte head cut after 3 and 17 bytes, the data in
    // two more pieces; the Rwrite's room cut too.
    const std::string written(3000, 'W');
    P9Message write(p9::Type::Twrite, 5);
    write.u32(1).u64(50).u32(3000).raw(std::span(reinterpret_cast<const uint8_t*>(written.data()), written.size()));
    post_pieces(write.bytes(), {3, 14, 6, 1000, 2000}, {4, 60});
    REQUIRE(rig.driver.used_index() == 6);
    CHECK(rig.driver.used_element(5).second == p9::kHeaderSize + 4);
    P9Reply wrote = rig.reply(0, p9::kHeaderSize + 4);
    REQUIRE(wrote.type() == p9::Type::Rwrite);
    CHECK(wrote.body().u32() == 3000);
    std::ifstream in(rig.dir.path + "/file");
    const std::string now((std::istreambuf_iterator<char>(in)), {});
    CHECK(now == text.substr(0, 50) + written + text.substr(3050));
}

TEST_CASE("virtio-9p: chains that carry no message complete empty", "[virtio-9p]") {
    Rig rig;
    rig.post(0, {1, 2, 3});
    rig.kick();
    REQUIRE(rig.driver.used_index() == 1);
    CHECK(rig.driver.used_element(0).second == 0);
    // A reply buffer too small for any reply: nothing written either.
    rig.post(1, P9Message(p9::Type::Tversion, p9::kNoTag).u32(8192).str("9P2000.L").bytes(), 4);
    rig.kick();
    REQUIRE(rig.driver.used_index() == 2);
    CHECK(rig.driver.used_element(1).second == 0);
}

TEST_CASE("virtio-9p: Rflush is published after the reply to the flushed request", "[virtio-9p]") {
    Rig rig;
    {
        std::ofstream big(rig.dir.path + "/big");
        big << std::string(1 << 20, 'x');
    }
    rig.post(0, P9Message(p9::Type::Tversion, p9::kNoTag).u32(1 << 20).str("9P2000.L").bytes());
    rig.kick();
    rig.post(1, P9Message(p9::Type::Tattach, 1).u32(0).u32(p9::kNoFid).str("").str("").u32(0).bytes());
    rig.kick();
    rig.post(2, P9Message(p9::Type::Twalk, 2).u32(0).u32(1).u16(1).str("big").bytes());
    rig.kick();
    rig.post(3, P9Message(p9::Type::Tlopen, 3).u32(1).u32(0).bytes());
    rig.kick();
    uint16_t used = rig.driver.used_index();
    for (int round = 0; round < 30; ++round) {
        INFO("round " << round);
        // A slow request and the flush of its tag, in one kick.
        rig.post(4, P9Message(p9::Type::Tread, 40).u32(1).u64(0).u32(60000).bytes());
        rig.post(5, P9Message(p9::Type::Tflush, 41).u16(40).bytes());
        rig.kick();
        REQUIRE(rig.driver.used_index() == static_cast<uint16_t>(used + 2));
        CHECK(rig.driver.used_element(used).first == 8);        // the read's chain first
        CHECK(rig.driver.used_element(used + 1).first == 10);   // then the flush's
        used = static_cast<uint16_t>(used + 2);
    }
}
