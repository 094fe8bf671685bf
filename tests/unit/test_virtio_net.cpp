// virtio-net against real rings in guest RAM and a fake tap (a datagram
// socketpair): frames arrive byte-exact in both directions whatever the
// descriptor layout, MRG_RXBUF spreads a frame over buffers, the tap is not
// polled without receive buffers, malformed transmit chains are dropped and
// counted, and the tap's header size and offloads follow the negotiation.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <functional>
#include <thread>

#include "captured_log.h"
#include "net_rig.h"
#include "virtio_pci_rig.h"
#include "virtio/virtio_pci_legacy.h"
#include "vmm/core/event_loop.h"

using namespace minikvm;
using namespace net_rig;
using Catch::Matchers::Contains;
using LogCapture = test_helpers::CapturedLog;

namespace {

uint16_t num_buffers_at(const Rig& rig, uint64_t address) {
    const Bytes raw = rig.guest(address + net::kNumBuffersOffset, 2);
    return static_cast<uint16_t>(raw[0] | raw[1] << 8);
}

bool wait_until(const std::function<bool()>& condition) {
    for (int i = 0; i < 1000; ++i) {
        if (condition()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return condition();
}

}  // namespace

TEST_CASE("virtio-net: offered features, and the MAC and link status in the configuration space", "[net]") {
    Rig rig(kMac, false);
    const uint64_t offered = rig.net->device_features();
    for (unsigned feature : {0u, 1u, 5u, 7u, 8u, 9u, 11u, 12u, 13u, 15u, 16u, 28u, 29u})
        CHECK((offered >> feature & 1) == 1);
    // No UFO, no control queue, nothing a legacy transport cannot show.
    for (unsigned feature : {10u, 14u, 17u})
        CHECK((offered >> feature & 1) == 0);
    CHECK(offered >> 32 == 0);
    CHECK(rig.net->queue_count() == 2);
    CHECK(rig.net->device_type() == VirtioDeviceType::Net);

    std::array<uint8_t, 8> config{};
    rig.net->read_config(0, config);
    CHECK(config == std::array<uint8_t, 8>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 1, 0});

    // A legacy driver sets its MAC through the configuration space, byte by byte.
    for (uint32_t i = 0; i < 6; ++i) {
        const uint8_t byte = static_cast<uint8_t>(0x02 + i);
        rig.net->write_config(i, std::span(&byte, 1));
    }
    CHECK(rig.net->mac().to_string() == "02:03:04:05:06:07");
    LogCapture log;
    const std::array<uint8_t, 2> down{0, 0};
    rig.net->write_config(VirtioNet::kConfigStatus, down);
    rig.net->read_config(VirtioNet::kConfigStatus, std::span(config.data(), 2));
    CHECK(config[0] == 1);  // still up: the status is read-only
    CHECK(log.count("warning", "read-only status") == 1);
}

TEST_CASE("virtio-net: the tap's header size and offloads follow what the driver negotiated", "[net]") {
    struct Case {
        uint64_t features;
        int header;
        unsigned offloads;
    };
    const unsigned csum = NetBackend::kOffloadCsum, tso4 = NetBackend::kOffloadTso4, tso6 = NetBackend::kOffloadTso6,
                   ecn = NetBackend::kOffloadTsoEcn;
    const Case cases[] = {
        {0, 10, 0},
        {kMrg, 12, 0},
        {kGuestCsum, 10, csum},
        {kGuestCsum | kGuestTso4 | kGuestTso6 | kGuestEcn | kMrg, 12, csum | tso4 | tso6 | ecn},
        {kGuestCsum | kGuestTso6, 10, csum | tso6},
        // Segmentation without partial checksums means nothing to a tap.
        {kGuestTso4 | kGuestTso6 | kGuestEcn, 10, 0},
        // ECN only qualifies segmentation.
        {kGuestCsum | kGuestEcn, 10, csum},
        // Transmit offloads do not concern the tap's receive side.
        {kCsum | kHostTso4 | kHostTso6 | kHostEcn, 10, 0},
    };
    for (const Case& c : cases) {
        CAPTURE(c.features);
        Rig rig(c.features);
        REQUIRE(rig.record.header_sizes == std::vector<int>{c.header});
        REQUIRE(rig.record.offloads == std::vector<unsigned>{c.offloads});
        CHECK(rig.net->header_size() == static_cast<size_t>(c.header));
        CHECK(rig.net->tap_offloads() == c.offloads);
        // Reset turns offloads off at once: the next driver may accept less.
        rig.reset();
        if (c.offloads != 0) CHECK(rig.record.offloads.back() == 0);
        CHECK(rig.net->tap_offloads() == 0);
    }
}

TEST_CASE("virtio-net: a tap that refuses the header size stops the device; refused offloads are dropped", "[net]") {
    {
        LogCapture log;
        Rig rig(kMrg, false);
        rig.record.refuse_header_size = true;
        rig.activate();
        REQUIRE(rig.signals.broken.size() == 1);
        CHECK_THAT(rig.signals.broken[0], Contains("12-byte header"));
        // Not active: a kick does nothing, the tap is not polled.
        rig.post_tx({Bytes(12, 0), pattern(60, 1)});
        rig.kick_tx();
        CHECK(rig.tx.used_index() == 0);
        CHECK(rig.watcher.interest == 0);
    }
    LogCapture log;
    Rig rig(kGuestCsum | kGuestTso4, false);
    rig.record.refuse_offloads = true;
    rig.activate();
    CHECK(rig.signals.broken.empty());
    CHECK(rig.net->tap_offloads() == 0);
    CHECK(log.count("warning", "refused offloads csum,tso4") == 1);
    // Still works, with complete frames.
    const auto posted = rig.post_rx({1600});
    rig.kick_rx();
    rig.host_send(concat(Bytes(10, 0), pattern(100, 2)));
    rig.watcher.pump();
    CHECK(rig.rx.used_element(0) == std::pair<uint32_t, uint32_t>{posted.head, 110});
}

TEST_CASE("virtio-net: receive without MRG_RXBUF, header in its own buffer or in front of the frame", "[net]") {
    Rig rig(kMac | kGuestCsum);  // so DATA_VALID reaches the driver as the tap wrote it
    const auto separate = rig.post_rx({10, 1514});
    const auto together = rig.post_rx({1524});
    CHECK_FALSE(rig.polls_rx());  // posted, but the device only learns of them by the kick
    rig.kick_rx();
    REQUIRE(rig.polls_rx());

    const net::Header valid{.flags = net::kFlagDataValid};
    const Bytes first = pattern(100, 1);
    const Bytes second = pattern(1514, 2);  // exactly fills the second chain
    rig.host_send(concat(Bytes(10, 0), first));
    rig.host_send(concat(header_bytes(valid, 10), second));
    rig.watcher.pump();

    REQUIRE(rig.rx.used_index() == 2);
    CHECK(rig.rx.used_element(0) == std::pair<uint32_t, uint32_t>{separate.head, 110});
    CHECK(rig.rx.used_element(1) == std::pair<uint32_t, uint32_t>{together.head, 1524});
    CHECK(rig.guest(separate.addresses[0], 10) == Bytes(10, 0));
    CHECK(rig.guest(separate.addresses[1], 100) == first);
    CHECK(rig.guest(separate.addresses[1] + 100, 1) == Bytes{0xee});  // nothing past the frame
    CHECK(rig.guest(together.addresses[0], 10) == header_bytes(valid, 10));
    CHECK(rig.guest(together.addresses[0] + 10, 1514) == second);

    const VirtioNet::Counters counters = rig.net->counters();
    CHECK(counters.rx_packets == 2);
    CHECK(counters.rx_bytes == 1614);
    CHECK(counters.rx_dropped == 0);
    CHECK(rig.signals.used >= 1);
    // One batch per wakeup: both frames were waiting, one interrupt.
    CHECK(rig.signals.used == 1);
}

TEST_CASE("virtio-net: without MRG_RXBUF a frame too big for the buffer is dropped and the buffer reused", "[net]") {
    LogCapture log;
    Rig rig(kMac);
    const auto small = rig.post_rx({10, 100});
    rig.kick_rx();
    rig.host_send(concat(Bytes(10, 0), pattern(101, 1)));
    rig.watcher.pump();
    CHECK(rig.rx.used_index() == 0);
    CHECK(rig.net->counters().rx_dropped == 1);
    CHECK(log.count("warning", "does not fit the 100-byte receive buffer") == 1);

    const Bytes fits = pattern(100, 2);
    rig.host_send(concat(Bytes(10, 0), fits));
    rig.watcher.pump();
    REQUIRE(rig.rx.used_index() == 1);
    CHECK(rig.rx.used_element(0) == std::pair<uint32_t, uint32_t>{small.head, 110});
    CHECK(rig.guest(small.addresses[1], 100) == fits);
    CHECK(rig.net->counters().rx_packets == 1);
}

TEST_CASE("virtio-net: with MRG_RXBUF a frame spreads over buffers and num_buffers says how many", "[net]") {
    Rig rig(kMac | kMrg);
    std::vector<Rig::Posted> posted;
    for (int i = 0; i < 5; ++i) posted.push_back(rig.post_rx({64}));
    rig.kick_rx();

    const Bytes frame = pattern(150, 3);
    net::Header header{};
    header.num_buffers = 0x7777;  // whatever the tap leaves there, the device writes it
    rig.host_send(concat(header_bytes(header, 12), frame));
    rig.watcher.pump();

    // 12 + 150 = 162 bytes: 64 + 64 + 34, all published at once.
    REQUIRE(rig.rx.used_index() == 3);
    CHECK(rig.rx.used_element(0) == std::pair<uint32_t, uint32_t>{posted[0].head, 64});
    CHECK(rig.rx.used_element(1) == std::pair<uint32_t, uint32_t>{posted[1].head, 64});
    CHECK(rig.rx.used_element(2) == std::pair<uint32_t, uint32_t>{posted[2].head, 34});
    CHECK(num_buffers_at(rig, posted[0].addresses[0]) == 3);
    Bytes seen = rig.guest(posted[0].addresses[0] + 12, 52);
    const Bytes second = rig.guest(posted[1].addresses[0], 64);
    const Bytes third = rig.guest(posted[2].addresses[0], 34);
    seen.insert(seen.end(), second.begin(), second.end());
    seen.insert(seen.end(), third.begin(), third.end());
    CHECK(seen == frame);

    // The next frame fits one buffer: num_buffers 1.
    const Bytes small = pattern(40, 4);
    rig.host_send(concat(Bytes(12, 0), small));
    rig.watcher.pump();
    REQUIRE(rig.rx.used_index() == 4);
    CHECK(rig.rx.used_element(3) == std::pair<uint32_t, uint32_t>{posted[3].head, 52});
    CHECK(num_buffers_at(rig, posted[3].addresses[0]) == 1);
    CHECK(rig.guest(posted[3].addresses[0] + 12, 40) == small);
    CHECK(rig.net->counters().rx_packets == 2);
    CHECK(rig.net->counters().rx_bytes == 190);
}

TEST_CASE("virtio-net: with MRG_RXBUF a frame larger than the posted buffers waits for more, whole", "[net]") {
    Rig rig(kMac | kMrg);
    const auto first = rig.post_rx({64});
    rig.kick_rx();
    const Bytes frame = pattern(200, 5);  // 212 bytes with the header
    rig.host_send(concat(Bytes(12, 0), frame));
    const Bytes next = pattern(30, 6);
    rig.host_send(concat(Bytes(12, 0), next));
    rig.watcher.pump();

    // Nothing is published half, nothing more is read meanwhile.
    CHECK(rig.rx.used_index() == 0);
    CHECK_FALSE(rig.polls_rx());
    CHECK(rig.waiting_for_device() == 42u);
    CHECK(rig.net->counters().rx_dropped == 0);

    std::vector<Rig::Posted> more;
    for (int i = 0; i < 3; ++i) more.push_back(rig.post_rx({64}));
    rig.kick_rx();
    rig.watcher.pump();
    REQUIRE(rig.rx.used_index() == 4);
    CHECK(rig.rx.used_element(0) == std::pair<uint32_t, uint32_t>{first.head, 64});
    CHECK(rig.rx.used_element(3) == std::pair<uint32_t, uint32_t>{more[2].head, 20});
    CHECK(num_buffers_at(rig, first.addresses[0]) == 4);
    Bytes seen = rig.guest(first.addresses[0] + 12, 52);
    for (int i = 0; i < 3; ++i) {
        const Bytes part = rig.guest(more[static_cast<size_t>(i)].addresses[0], i < 2 ? 64 : 20);
        seen.insert(seen.end(), part.begin(), part.end());
    }
    CHECK(seen == frame);
    // The ring is dry again: the second frame still waits on the host side.
    CHECK_FALSE(rig.polls_rx());
    CHECK(rig.waiting_for_device() == 42u);
}

TEST_CASE("virtio-net: without receive buffers the tap is not polled; a kick re-arms it", "[net]") {
    for (const uint64_t features : {kMac, kMac | kEventIdx, kMac | kMrg}) {
        CAPTURE(features);
        Rig rig(features);
        const size_t header = rig.header();
        // Empty ring: the device asks to be kicked and leaves the tap alone.
        CHECK_FALSE(rig.polls_rx());
        if ((features & kEventIdx) != 0) CHECK(rig.rx.avail_event() == 0);
        else CHECK(rig.rx.used_flags() == 0);
        for (int i = 0; i < 3; ++i) rig.host_send(concat(Bytes(header, 0), pattern(60, static_cast<uint32_t>(i))));
        CHECK(rig.watcher.pump() == 0);  // no wakeup at all: no busy loop
        CHECK(rig.waiting_for_device() == header + 60);
        CHECK(rig.rx.used_index() == 0);

        // One buffer: one frame, then dry and quiet again.
        rig.post_rx({1600});
        rig.kick_rx();
        CHECK(rig.watcher.pump() <= 1);
        CHECK(rig.rx.used_index() == 1);
        CHECK_FALSE(rig.polls_rx());
        CHECK(rig.waiting_for_device() == header + 60);

        // Buffers posted while the device was not looking are found at the kick.
        rig.post_rx({1600});
        rig.post_rx({1600});
        rig.kick_rx();
        rig.watcher.pump();
        CHECK(rig.rx.used_index() == 3);
        CHECK_FALSE(rig.waiting_for_device());
        CHECK(rig.net->counters().rx_packets == 3);
        CHECK(rig.net->counters().rx_dropped == 0);
    }
}

TEST_CASE("virtio-net: while buffers remain, the device polls the tap and wants no kicks", "[net]") {
    Rig rig(kMac);
    rig.post_rx({1600});
    rig.post_rx({1600});
    rig.kick_rx();
    CHECK(rig.polls_rx());
    CHECK(rig.rx.used_flags() == split_ring::kUsedNoNotify);
    rig.host_send(concat(Bytes(10, 0), pattern(60, 1)));
    rig.watcher.pump();
    CHECK(rig.polls_rx());  // one buffer left
    rig.host_send(concat(Bytes(10, 0), pattern(60, 2)));
    rig.watcher.pump();
    CHECK_FALSE(rig.polls_rx());
    CHECK(rig.rx.used_flags() == 0);  // kick me
}

TEST_CASE("virtio-net: transmit gathers each chain into one frame, whatever the layout", "[net]") {
    Rig rig(kMac | kCsum | kHostTso4);
    const Bytes frame = pattern(100, 7);
    const net::Header csum{.flags = net::kFlagNeedsCsum | net::kFlagDataValid, .csum_start = 34, .csum_offset = 16};
    const Bytes header = header_bytes(csum, 10);
    const Bytes clean = header_bytes(net::sanitized_for_tap(csum), 10);

    rig.post_tx({header, frame});                   // header in its own descriptor
    rig.post_tx({concat(header, frame)});           // header in front of the frame
    rig.post_tx({Bytes(header.begin(), header.begin() + 4),
                 concat(Bytes(header.begin() + 4, header.end()), Bytes(frame.begin(), frame.begin() + 20)),
                 Bytes(frame.begin() + 20, frame.end())});  // header split across descriptors
    rig.kick_tx();

    for (int i = 0; i < 3; ++i) {
        const auto sent = rig.host_receive();
        REQUIRE(sent);
        CHECK(*sent == concat(clean, frame));
    }
    CHECK_FALSE(rig.host_receive());
    REQUIRE(rig.tx.used_index() == 3);
    for (uint16_t i = 0; i < 3; ++i) CHECK(rig.tx.used_element(i).second == 0);
    CHECK(rig.net->counters().tx_packets == 3);
    CHECK(rig.net->counters().tx_bytes == 300);
    CHECK(rig.signals.used == 1);
    // The backend hears once that the round is over, not per frame.
    CHECK(rig.record.sent_rounds == 1);
    rig.kick_tx();  // nothing new: nothing to tell
    CHECK(rig.record.sent_rounds == 1);
}

TEST_CASE("virtio-net: a long transmit pass hands sent chains back before it ends", "[net]") {
    // 200 full-size frames are 300 KB: past kTransmitPublishBytes the
    // driver sees chains come back while the rest is still being sent.
    Rig rig(kMac);
    std::vector<uint16_t> used_seen;
    rig.record.on_send = [&] { used_seen.push_back(rig.tx.used_index()); };
    const Bytes frame = concat(Bytes(10, 0), pattern(1514, 3));
    for (int i = 0; i < 200; ++i) rig.post_tx({frame});
    rig.kick_tx();
    REQUIRE(used_seen.size() == 200);
    CHECK(used_seen.front() == 0);
    const size_t published_after = VirtioNet::kTransmitPublishBytes / frame.size() + 1;
    CHECK(used_seen[published_after] == published_after);  // the first batch, before the pass ended
    CHECK(rig.tx.used_index() == 200);
    CHECK(rig.net->counters().tx_packets == 200);
}

TEST_CASE("virtio-net: transmit with MRG_RXBUF uses the 12-byte header and a TSO frame goes out", "[net]") {
    Rig rig(kMac | kMrg | kCsum | kHostTso4 | kHostTso6);
    const Bytes frame = pattern(9000, 8);
    const net::Header tso{.flags = net::kFlagNeedsCsum,
                          .gso_type = net::kGsoTcpV6,
                          .hdr_len = 74,
                          .gso_size = 1428,
                          .csum_start = 54,
                          .csum_offset = 16,
                          .num_buffers = 3};
    rig.post_tx({header_bytes(tso, 12), frame});
    rig.kick_tx();
    const auto sent = rig.host_receive();
    REQUIRE(sent);
    net::Header expected = tso;
    expected.num_buffers = 0;  // the driver should have; the tap gets 0 anyway
    CHECK(*sent == concat(header_bytes(expected, 12), frame));
    CHECK(rig.net->counters().tx_packets == 1);
}

TEST_CASE("virtio-net: malformed transmit chains are dropped, counted, logged and completed", "[net]") {
    LogCapture log;
    Rig rig(kMac | kCsum | kHostTso4);
    const Bytes frame = pattern(200, 9);
    const auto header = [](net::Header h) { return header_bytes(h, 10); };
    struct Bad {
        std::vector<Bytes> pieces;
        const char* why;
    };
    const std::vector<Bad> bad{
        {{Bytes(9, 0)}, "shorter than the 10-byte header"},
        {{Bytes(10, 0), Bytes(13, 0)}, "shorter than an Ethernet header"},
        {{header({.gso_type = net::kGsoTcpV6, .hdr_len = 54, .gso_size = 1000}), frame}, "HOST_TSO6 not negotiated"},
        {{header({.gso_type = net::kGsoUdp, .hdr_len = 42, .gso_size = 1000}), frame}, "HOST_UFO"},
        {{header({.gso_type = net::kGsoTcpV4 | net::kGsoEcn, .hdr_len = 54, .gso_size = 1000}), frame}, "HOST_ECN"},
        {{header({.gso_type = 9}), frame}, "unknown gso_type"},
        {{header({.gso_type = net::kGsoTcpV4, .hdr_len = 54, .gso_size = 0}), frame}, "gso_size 0"},
        {{header({.gso_type = net::kGsoTcpV4, .hdr_len = 201, .gso_size = 100}), frame}, "hdr_len 201"},
        {{header({.flags = net::kFlagNeedsCsum, .csum_start = 190, .csum_offset = 9}), frame}, "past the 200-byte"},
        {{Bytes(10, 0), Bytes(70000, 0)}, "over the 65554-byte limit"},
    };
    for (const Bad& b : bad) rig.post_tx(b.pieces);
    // A chain with a device-writable buffer is not a transmit chain.
    rig.offer(rig.tx, rig.tx_next, {concat(Bytes(10, 0), frame)}, {64});
    const Bytes good = pattern(60, 10);
    rig.post_tx({concat(Bytes(10, 0), good)});
    rig.kick_tx();

    // Only the good one reached the tap; every chain came back.
    const auto sent = rig.host_receive();
    REQUIRE(sent);
    CHECK(*sent == concat(Bytes(10, 0), good));
    CHECK_FALSE(rig.host_receive());
    CHECK(rig.tx.used_index() == bad.size() + 2);
    const VirtioNet::Counters counters = rig.net->counters();
    CHECK(counters.tx_dropped == bad.size() + 1);
    CHECK(counters.tx_packets == 1);
    CHECK(rig.signals.broken.empty());  // a bad packet is not a broken ring
    // Rate-limited: the first five are logged, each naming its rule.
    CHECK(log.count("warning", "dropped") == 5);
    for (size_t i = 0; i < 5; ++i) CHECK(log.count("warning", bad[i].why) == 1);
}

TEST_CASE("virtio-net: a tap that would block keeps the chain, waits for writable, drops nothing", "[net]") {
    Rig rig(kMac);
    // A small send buffer: a few frames fill it while the host reads none.
    const int small = 4096;
    REQUIRE(::setsockopt(rig.device_fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    constexpr int kFrames = 40;
    std::vector<Bytes> frames;
    for (int i = 0; i < kFrames; ++i) {
        frames.push_back(pattern(1000, static_cast<uint32_t>(100 + i)));
        rig.post_tx({concat(Bytes(10, 0), frames.back())});
    }
    rig.kick_tx();
    const uint16_t first_round = rig.tx.used_index();
    REQUIRE(first_round < kFrames);
    CHECK(rig.polls_tx());
    CHECK(rig.tx.used_flags() == split_ring::kUsedNoNotify);  // no kicks wanted while blocked
    CHECK(rig.watcher.pump() == 0);                           // not writable yet: no wakeup

    std::vector<Bytes> received;
    for (int round = 0; round < 1000 && received.size() < frames.size(); ++round) {
        while (auto frame = rig.host_receive()) received.push_back(*frame);
        rig.watcher.pump();
    }
    REQUIRE(received.size() == frames.size());
    for (size_t i = 0; i < frames.size(); ++i) CHECK(received[i] == concat(Bytes(10, 0), frames[i]));
    CHECK(rig.tx.used_index() == kFrames);
    CHECK_FALSE(rig.polls_tx());
    CHECK(rig.net->counters().tx_dropped == 0);
    CHECK(rig.net->counters().tx_packets == kFrames);
    CHECK(rig.tx.used_flags() == 0);
}

TEST_CASE("virtio-net: frames with offloads the driver refused are dropped on receive", "[net]") {
    LogCapture log;
    Rig rig(kMac | kGuestCsum);  // partial checksums yes, segmentation no
    rig.post_rx({70000});
    rig.kick_rx();
    const net::Header gso{.flags = net::kFlagNeedsCsum, .gso_type = net::kGsoTcpV4, .hdr_len = 54, .gso_size = 1448,
                          .csum_start = 34, .csum_offset = 16};
    rig.host_send(concat(header_bytes(gso, 10), pattern(3000, 1)));
    const net::Header partial{.flags = net::kFlagNeedsCsum, .csum_start = 34, .csum_offset = 16};
    rig.host_send(concat(header_bytes(partial, 10), pattern(100, 2)));
    rig.watcher.pump();
    REQUIRE(rig.rx.used_index() == 1);
    CHECK(rig.rx.used_element(0).second == 110);
    CHECK(rig.net->counters().rx_dropped == 1);
    CHECK(log.count("warning", "did not accept") == 1);
}

TEST_CASE("virtio-net: receive chains too small for a header come back empty", "[net]") {
    LogCapture log;
    Rig rig(kMac | kMrg);
    const auto tiny = rig.post_rx({11});
    const auto good = rig.post_rx({1600});
    rig.kick_rx();
    rig.host_send(concat(Bytes(12, 0), pattern(60, 1)));
    rig.watcher.pump();
    REQUIRE(rig.rx.used_index() == 2);
    CHECK(rig.rx.used_element(0) == std::pair<uint32_t, uint32_t>{tiny.head, 0});
    CHECK(rig.rx.used_element(1) == std::pair<uint32_t, uint32_t>{good.head, 72});
    CHECK(log.count("warning", "less than the 12-byte header") == 1);
}

TEST_CASE("virtio-net: reset forgets held buffers and a half-delivered frame", "[net]") {
    Rig rig(kMac | kMrg);
    rig.post_rx({64});
    rig.kick_rx();
    rig.host_send(concat(Bytes(12, 0), pattern(500, 1)));
    rig.watcher.pump();
    CHECK(rig.rx.used_index() == 0);
    rig.reset();
    CHECK(rig.net->counters().rx_dropped == 1);
    CHECK(rig.watcher.interest == 0);
    rig.post_rx({1600});
    rig.kick_rx();  // ignored: not active
    CHECK(rig.rx.used_index() == 0);
}

TEST_CASE("virtio-net: a tap that ends is logged once and never polled again", "[net]") {
    LogCapture log;
    Rig rig(kMac);
    rig.post_rx({1600});
    rig.kick_rx();
    rig.peer.reset();  // the host side goes away: end of file
    rig.watcher.pump();
    CHECK(rig.watcher.interest == 0);
    CHECK(log.count("error", "failed: end of file") == 1);
    CHECK(rig.watcher.pump() == 0);
}

TEST_CASE("virtio-net: the state dump shows the counters through the transport", "[net]") {
    Rig rig(kMac, false);
    test_helpers::FakeIrq irq;
    VirtioPciLegacy transport(*rig.net, rig.memory, "virtio-net9");
    transport.connect_intx(irq);
    uint8_t ids[4] = {};
    transport.config().read(PciConfigSpace::kVendorId, ids);
    CHECK(test_helpers::from_le(ids) == (0x1000u << 16 | 0x1af4u));
    transport.config().read(PciConfigSpace::kSubsystemVendorId, ids);
    CHECK(test_helpers::from_le(ids) == (1u << 16 | 0x1af4u));  // subsystem 1: network card
    CHECK(virtio_pci_rig::reg_read(transport, VirtioPciLegacy::kHostFeatures, 4) ==
          static_cast<uint32_t>(rig.net->device_features()));
    CHECK(virtio_pci_rig::reg_read(transport, VirtioPciLegacy::kConfig, 4) == 0x12005452u);
    const std::string report = transport.state_report();
    CHECK_THAT(report, Contains("virtio-net9 net tap faketap0 mac=52:54:00:12:34:56"));
    CHECK_THAT(report, Contains("virtio-net9 net rx packets=0 bytes=0 dropped=0"));
    CHECK_THAT(report, Contains("virtio-net9 net tx packets=0 bytes=0 dropped=0 blocked=no"));
}

TEST_CASE("virtio-net: on a real event loop, frames arrive as the guest posts buffers", "[net]") {
    EventLoop loop;
    Rig rig(kMac | kMrg | kEventIdx, true, &loop);
    rig.post_rx({1600});
    rig.post_rx({1600});
    rig.kick_rx();
    // Sent while the device waits: the loop's thread delivers it.
    rig.host_send(concat(Bytes(12, 0), pattern(1000, 1)));
    REQUIRE(wait_until([&] { return rig.rx.used_index() == 1; }));
    // Three more, one buffer left: one goes in, two wait on the host side.
    for (uint32_t i = 2; i <= 4; ++i) rig.host_send(concat(Bytes(12, 0), pattern(1000, i)));
    REQUIRE(wait_until([&] { return rig.rx.used_index() == 2; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(rig.rx.used_index() == 2);
    CHECK(rig.waiting_for_device() == 1012u);
    for (int i = 0; i < 4; ++i) rig.post_rx({1600});
    rig.kick_rx();
    REQUIRE(wait_until([&] { return rig.rx.used_index() == 4; }));
    CHECK(rig.net->counters().rx_packets == 4);
    CHECK(rig.net->counters().rx_dropped == 0);
    rig.reset();
}

// --- guest and tap misbehaviour ---------------------------------------------------

TEST_CASE("virtio-net: a receive ring offering more chains than the table holds stops the device", "[net]") {
    LogCapture log;
    Rig rig(kMac);
    rig.post_rx({1600});
    rig.kick_rx();  // no frame yet: the device holds the chain
    REQUIRE(rig.queues[0].in_flight() == 1);
    // Nothing comes back, yet the driver offers a short chain a whole ring's
    // worth of times: each would be completed empty, in the same wakeup.
    rig.rx.descriptor(200, rig.allocate(4), 4, kWrite);
    for (unsigned i = 0; i < VirtioNet::kQueueSize; ++i) rig.rx.offer(200);
    rig.host_send(concat(Bytes(10, 0), pattern(60, 1)));
    rig.watcher.pump();
    REQUIRE(rig.signals.broken.size() == 1);
    CHECK_THAT(rig.signals.broken[0], Contains("2.7.13.1"));
    CHECK(rig.queues[0].error() == VirtQueueError::TooManyInFlight);
    CHECK_FALSE(rig.polls_rx());
}

TEST_CASE("virtio-net: a transmit ring offering more chains than the table holds stops the device", "[net]") {
    LogCapture log;
    Rig rig(kMac);
    rig.fill_tap();
    rig.post_tx({concat(Bytes(10, 0), pattern(60, 1))});
    rig.kick_tx();
    REQUIRE(rig.polls_tx());  // the device holds the blocked chain
    // A chain too short for a header, offered over and over: each is
    // dropped and completed in the same wakeup.
    rig.tx.descriptor(200, rig.allocate(4), 4);
    for (unsigned i = 0; i < VirtioNet::kQueueSize; ++i) rig.tx.offer(200);
    rig.drain_host();
    rig.watcher.pump();
    REQUIRE(rig.signals.broken.size() == 1);
    CHECK_THAT(rig.signals.broken[0], Contains("2.7.13.1"));
    CHECK(rig.queues[1].error() == VirtQueueError::TooManyInFlight);
    CHECK(rig.net->counters().tx_packets == 1);
    CHECK(rig.net->counters().tx_dropped == VirtioNet::kQueueSize - 1);
}

TEST_CASE("virtio-net: a tap that is down drops frames, counted, and works again once up", "[net]") {
    LogCapture log;
    Rig rig(kMac);
    // A hung-up terminal answers every write with EIO, as a tap that is not
    // IFF_UP does: put one where the device's tap is.
    const int saved = ::dup(rig.device_fd);
    REQUIRE(saved >= 0);
    const int master = ::posix_openpt(O_RDWR | O_NOCTTY);
    REQUIRE(master >= 0);
    REQUIRE(::grantpt(master) == 0);
    REQUIRE(::unlockpt(master) == 0);
    const int terminal = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
    REQUIRE(terminal >= 0);
    ::close(master);
    REQUIRE(::dup2(terminal, rig.device_fd) == rig.device_fd);
    ::close(terminal);

    rig.post_tx({concat(Bytes(10, 0), pattern(60, 1))});
    rig.post_tx({concat(Bytes(10, 0), pattern(60, 2))});
    rig.kick_tx();
    CHECK(rig.tx.used_index() == 2);
    CHECK(rig.net->counters().tx_dropped == 2);
    CHECK(log.count("warning", "tap faketap0 is down; 60-byte frame dropped") == 2);
    CHECK(log.count("error", "failed") == 0);

    // The interface comes up: frames go out again, the link never went down.
    REQUIRE(::dup2(saved, rig.device_fd) == rig.device_fd);
    ::close(saved);
    const Bytes frame = concat(Bytes(10, 0), pattern(60, 3));
    rig.post_tx({frame});
    rig.kick_tx();
    CHECK(rig.host_receive() == frame);
    CHECK(rig.net->counters().tx_packets == 1);
    std::array<uint8_t, 2> status{};
    rig.net->read_config(VirtioNet::kConfigStatus, status);
    CHECK(status[0] == VirtioNet::kStatusLinkUp);
}

TEST_CASE("virtio-net: when the tap fails, waiting transmit chains complete and the link goes down", "[net]") {
    LogCapture log;
    Rig rig(kMac);
    rig.fill_tap();
    const auto blocked = rig.post_tx({concat(Bytes(10, 0), pattern(60, 1))});
    rig.kick_tx();
    REQUIRE(rig.polls_tx());
    // Queued behind it without a kick: notifications are off meanwhile.
    REQUIRE(rig.tx.used_flags() == split_ring::kUsedNoNotify);
    const auto behind = rig.post_tx({concat(Bytes(10, 0), pattern(60, 2))});
    const int interrupts = rig.signals.used;

    rig.watcher.handler(EventSources::kError);  // the tap reports an error or hang-up
    CHECK(log.count("error", "failed") == 1);
    REQUIRE(rig.tx.used_index() == 2);
    CHECK(rig.tx.used_element(0) == std::pair<uint32_t, uint32_t>{blocked.head, 0});
    CHECK(rig.tx.used_element(1) == std::pair<uint32_t, uint32_t>{behind.head, 0});
    CHECK(rig.net->counters().tx_dropped == 2);
    CHECK(rig.signals.used > interrupts);
    CHECK(rig.tx.used_flags() == 0);  // kicks wanted again
    CHECK_FALSE(rig.polls_tx());
    CHECK(rig.signals.config == 1);
    std::array<uint8_t, 2> status{};
    rig.net->read_config(VirtioNet::kConfigStatus, status);
    CHECK(status == std::array<uint8_t, 2>{0, 0});
}

TEST_CASE("virtio-net: with MRG_RXBUF chains completed in the same wakeup do not make a big frame drop",
          "[net]") {
    Rig rig(kMac | kMrg);
    std::vector<Rig::Posted> posted;
    for (unsigned i = 0; i < VirtioNet::kQueueSize; ++i) posted.push_back(rig.post_rx({64}));
    rig.kick_rx();
    constexpr unsigned kSmall = 60;  // one chain each
    for (uint32_t i = 0; i < kSmall; ++i) rig.host_send(concat(Bytes(12, 0), pattern(40, i)));
    // 200 chains' worth: more than the ring has left, less than all of it.
    const Bytes big = pattern(200 * 64 - 12, 99);
    rig.host_send(concat(Bytes(12, 0), big));
    rig.watcher.pump();
    CHECK(rig.net->counters().rx_dropped == 0);
    CHECK(rig.rx.used_index() == kSmall);  // the small ones come back, the big one waits

    std::vector<Rig::Posted> more;
    for (int i = 0; i < 4; ++i) more.push_back(rig.post_rx({64}));
    rig.kick_rx();
    rig.watcher.pump();
    REQUIRE(rig.rx.used_index() == kSmall + 200);
    CHECK(num_buffers_at(rig, posted[kSmall].addresses[0]) == 200);
    Bytes seen = rig.guest(posted[kSmall].addresses[0] + 12, 52);
    for (size_t i = kSmall + 1; i < posted.size(); ++i) {
        const Bytes part = rig.guest(posted[i].addresses[0], 64);
        seen.insert(seen.end(), part.begin(), part.end());
    }
    for (const Rig::Posted& chain : more) {
        const Bytes part = rig.guest(chain.addresses[0], 64);
        seen.insert(seen.end(), part.begin(), part.end());
    }
    CHECK(seen == big);
    CHECK(rig.net->counters().rx_dropped == 0);
}

TEST_CASE("virtio-net: one read never takes more than IOV_MAX buffers, however many chains are held", "[net]") {
    LogCapture log;
    Rig rig(kMac | kMrg | kIndirect);
    // 256 one-byte buffers a chain: the 1530 bytes taken ahead would be
    // 1536 buffers.
    std::vector<Rig::Posted> posted;
    for (int i = 0; i < 8; ++i) posted.push_back(rig.post_rx_indirect(VirtioNet::kQueueSize, 1));
    rig.kick_rx();
    const Bytes frame = pattern(1000, 7);
    rig.host_send(concat(Bytes(12, 0), frame));
    rig.watcher.pump();
    CHECK(log.count("error", "failed") == 0);
    REQUIRE(rig.rx.used_index() == 4);  // 1012 bytes: 256 + 256 + 256 + 244
    CHECK(rig.rx.used_element(3) == std::pair<uint32_t, uint32_t>{posted[3].head, 244});
    Bytes seen;
    for (size_t chain = 0; chain < 4; ++chain)
        for (const uint64_t address : posted[chain].addresses) seen.push_back(rig.guest(address, 1)[0]);
    seen.resize(1012);
    CHECK(Bytes(seen.begin() + 12, seen.end()) == frame);
    CHECK(seen[10] == 4);  // num_buffers
    CHECK(seen[11] == 0);
    CHECK(rig.net->counters().rx_packets == 1);

    // The next frame starts in the chains still held.
    const Bytes next = pattern(100, 8);
    rig.host_send(concat(Bytes(12, 0), next));
    rig.watcher.pump();
    REQUIRE(rig.rx.used_index() == 5);
    CHECK(rig.rx.used_element(4) == std::pair<uint32_t, uint32_t>{posted[4].head, 112});
}

TEST_CASE("virtio-net: without GUEST_CSUM the driver never sees DATA_VALID", "[net]") {
    for (const uint64_t features : {kMac, kMac | kGuestCsum}) {
        CAPTURE(features);
        Rig rig(features);
        const auto buffer = rig.post_rx({1600});
        rig.kick_rx();
        // A tap marks checked frames DATA_VALID whatever it was told.
        rig.host_send(concat(header_bytes(net::Header{.flags = net::kFlagDataValid}, 10), pattern(60, 1)));
        rig.watcher.pump();
        REQUIRE(rig.rx.used_index() == 1);
        const uint8_t want = (features & kGuestCsum) != 0 ? net::kFlagDataValid : 0;
        CHECK(rig.guest(buffer.addresses[0], 1)[0] == want);
    }
}

TEST_CASE("virtio-net: reset brings back the configured MAC", "[net]") {
    Rig rig(kMac);
    const std::array<uint8_t, 6> written{0x02, 0, 0, 0, 0, 0x99};
    rig.net->write_config(VirtioNet::kConfigMac, written);
    REQUIRE(rig.net->mac().to_string() == "02:00:00:00:00:99");
    rig.reset();
    CHECK(rig.net->mac().to_string() == "52:54:00:12:34:56");
    std::array<uint8_t, 6> config{};
    rig.net->read_config(VirtioNet::kConfigMac, config);
    CHECK(config == std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0x12, 0x34, 0x56});
}

TEST_CASE("virtio-net: configuration-space warnings are not silenced by receive drops", "[net]") {
    LogCapture log;
    Rig rig(kMac);
    rig.post_rx({1600});
    rig.kick_rx();
    for (uint32_t i = 0; i < 10; ++i) rig.host_send(Bytes(12, 0));  // too short: dropped, logged
    rig.watcher.pump();
    REQUIRE(rig.net->counters().rx_dropped == 10);
    const std::array<uint8_t, 2> down{0, 0};
    rig.net->write_config(VirtioNet::kConfigStatus, down);
    CHECK(log.count("warning", "read-only status") == 1);
}
