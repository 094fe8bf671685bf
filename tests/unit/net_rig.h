#pragma once
// A virtio-net device on a fake tap (one end of a SOCK_SEQPACKET socketpair:
// one frame per read or write, like a tap; the test holds the other end as
// the host), a fake EventSources that shows what the device polls, and the
// driver's half of both rings in real guest RAM.

#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "recording_signals.h"
#include "ring_driver.h"
#include "vmm/backends/net/net_backend.h"
#include "vmm/backends/net/net_header.h"
#include "virtio/virtio_net.h"
#include "virtio/virtqueue.h"
#include "vmm/core/event_sources.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/unique_fd.h"

namespace net_rig {

using namespace minikvm;

constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kRamSize = 16 * kMiB;
constexpr uint32_t kRxPfn = 0x10;
constexpr uint32_t kTxPfn = 0x20;
constexpr uint64_t kData = 1 * kMiB;
constexpr uint16_t kWrite = split_ring::kDescWrite;
constexpr uint16_t kNext = split_ring::kDescNext;
constexpr uint64_t kMac = 1ULL << VirtioNet::kFeatureMac;
constexpr uint64_t kMrg = 1ULL << VirtioNet::kFeatureMrgRxbuf;
constexpr uint64_t kCsum = 1ULL << VirtioNet::kFeatureCsum;
constexpr uint64_t kGuestCsum = 1ULL << VirtioNet::kFeatureGuestCsum;
constexpr uint64_t kHostTso4 = 1ULL << VirtioNet::kFeatureHostTso4;
constexpr uint64_t kHostTso6 = 1ULL << VirtioNet::kFeatureHostTso6;
constexpr uint64_t kHostEcn = 1ULL << VirtioNet::kFeatureHostEcn;
constexpr uint64_t kGuestTso4 = 1ULL << VirtioNet::kFeatureGuestTso4;
constexpr uint64_t kGuestTso6 = 1ULL << VirtioNet::kFeatureGuestTso6;
constexpr uint64_t kGuestEcn = 1ULL << VirtioNet::kFeatureGuestEcn;
constexpr uint64_t kEventIdx = 1ULL << split_ring::kFeatureEventIdx;
constexpr uint64_t kIndirect = 1ULL << split_ring::kFeatureIndirectDesc;

using Bytes = std::vector<uint8_t>;

inline Bytes pattern(size_t size, uint32_t seed) {
    Bytes bytes(size);
    std::mt19937 random(seed);
    for (uint8_t& byte : bytes) byte = static_cast<uint8_t>(random());
    return bytes;
}

inline Bytes concat(const Bytes& a, const Bytes& b) {
    Bytes out = a;
    out.insert(out.end(), b.begin(), b.end());
    return out;
}

inline Bytes header_bytes(const net::Header& header, size_t size) {
    Bytes bytes(size);
    net::encode(header, bytes);
    return bytes;
}

// What the device did to the tap's knobs.
struct TapRecord {
    std::vector<unsigned> offloads;
    std::vector<int> header_sizes;
    bool refuse_offloads = false;
    bool refuse_header_size = false;
    int sent_rounds = 0;  // sent() calls: one per transmit round that sent anything
    // When set, send() calls it and takes the frame without writing it.
    std::function<void()> on_send;
};

class FakeTap : public NetBackend {
public:
    FakeTap(UniqueFd fd, TapRecord& record) : fd_(std::move(fd)), record_(record) {}
    int fd() const override { return fd_.get(); }
    const std::string& name() const override { return name_; }
    std::string label() const override { return "tap " + name_; }
    void set_offloads(unsigned offloads) override {
        if (record_.refuse_offloads && offloads != 0) throw std::system_error(EINVAL, std::generic_category(), "TUNSETOFFLOAD");
        record_.offloads.push_back(offloads);
    }
    void set_header_size(int bytes) override {
        if (record_.refuse_header_size) throw std::system_error(EINVAL, std::generic_category(), "TUNSETVNETHDRSZ");
        record_.header_sizes.push_back(bytes);
    }
    void sent() override { ++record_.sent_rounds; }
    ssize_t send(std::span<const iovec> pieces) override {
        if (!record_.on_send) return NetBackend::send(pieces);
        record_.on_send();
        size_t total = 0;
        for (const iovec& piece : pieces) total += piece.iov_len;
        return static_cast<ssize_t>(total);
    }

private:
    UniqueFd fd_;
    std::string name_ = "faketap0";
    TapRecord& record_;
};

// Runs the handler by hand, as a level-triggered epoll loop would: only for
// readiness the device asked for.
struct FakeWatcher : EventSources {
    int fd = -1;
    std::atomic<uint32_t> interest{0};
    Handler handler;
    int handler_calls = 0;

    void watch(int watched, uint32_t wanted, Handler on_ready) override {
        fd = watched;
        interest = wanted;
        handler = std::move(on_ready);
    }
    void set_interest(int, uint32_t wanted) override { interest = wanted; }
    void unwatch(int) override { handler = nullptr; }

    // Readiness of the fd now, among what is armed.
    uint32_t ready() const {
        const uint32_t armed = interest;
        pollfd p{fd, static_cast<short>(((armed & kReadable) != 0 ? POLLIN : 0) | ((armed & kWritable) != 0 ? POLLOUT : 0)),
                 0};
        if (armed == 0 || ::poll(&p, 1, 0) <= 0) return 0;
        return ((p.revents & POLLIN) != 0 ? kReadable : 0u) | ((p.revents & POLLOUT) != 0 ? kWritable : 0u) |
               ((p.revents & (POLLERR | POLLHUP)) != 0 ? kError : 0u);
    }
    // One wakeup, if anything armed is ready.
    bool fire() {
        const uint32_t bits = ready();
        if (bits == 0 || !handler) return false;
        ++handler_calls;
        handler(bits);
        return true;
    }
    // Wakeups until nothing armed is ready; how many ran.
    int pump(int limit = 1000) {
        int runs = 0;
        while (runs < limit && fire()) ++runs;
        return runs;
    }
};

struct Rig {
    explicit Rig(uint64_t features = kMac, bool activate_now = true, EventSources* watcher_override = nullptr)
        : features(features) {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
        peer.reset(fds[1]);
        device_fd = fds[0];
        net = std::make_unique<VirtioNet>("virtio-net-test", std::make_unique<FakeTap>(UniqueFd(fds[0]), record),
                                          MacAddress{{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}},
                                          watcher_override != nullptr ? *watcher_override : watcher);
        queues.emplace_back(memory, "rxq");
        queues.emplace_back(memory, "txq");
        for (VirtQueue& queue : queues) queue.set_features(features);
        REQUIRE(queues[0].configure(kRxPfn, VirtioNet::kQueueSize));
        REQUIRE(queues[1].configure(kTxPfn, VirtioNet::kQueueSize));
        if (activate_now) activate();
    }
    ~Rig() {
        if (net) reset();
    }
    // The test stands in for the transport, which holds the device's lock
    // around every call (tap readiness takes it on the event loop).
    void activate() {
        std::lock_guard lock(net->device_lock());
        net->activate(features, queues, signals);
    }
    void reset() {
        std::lock_guard lock(net->device_lock());
        net->reset();
    }
    size_t header() const { return (features & kMrg) != 0 ? 12 : 10; }

    uint64_t allocate(uint64_t size) {
        const uint64_t address = next_free;
        next_free = (next_free + size + 63) / 64 * 64;
        REQUIRE(next_free < kRamSize);
        return address;
    }
    Bytes guest(uint64_t address, size_t size) const {
        Bytes bytes(size);
        REQUIRE(memory.read(address, bytes));
        return bytes;
    }

    struct Posted {
        uint16_t head;
        std::vector<uint64_t> addresses;
    };
    // A chain of consecutive descriptors in `driver`'s table, made available.
    Posted offer(test_helpers::RingDriver& driver, uint32_t& next_descriptor, const std::vector<Bytes>& pieces,
                 const std::vector<uint32_t>& writable_sizes) {
        Posted posted{static_cast<uint16_t>(next_descriptor % VirtioNet::kQueueSize), {}};
        const size_t count = pieces.size() + writable_sizes.size();
        for (size_t i = 0; i < count; ++i) {
            const auto index = static_cast<uint16_t>((next_descriptor + i) % VirtioNet::kQueueSize);
            const bool writable = i >= pieces.size();
            const uint32_t length = writable ? writable_sizes[i - pieces.size()] : static_cast<uint32_t>(pieces[i].size());
            const uint64_t address = allocate(length);
            if (writable) {
                REQUIRE(memory.write(address, Bytes(length, 0xee)));
            } else {
                REQUIRE(memory.write(address, pieces[i]));
            }
            posted.addresses.push_back(address);
            const uint16_t flags = static_cast<uint16_t>((writable ? kWrite : 0) | (i + 1 < count ? kNext : 0));
            driver.descriptor(index, address, length, flags, static_cast<uint16_t>((index + 1) % VirtioNet::kQueueSize));
        }
        next_descriptor += static_cast<uint32_t>(count);
        driver.offer(posted.head);
        return posted;
    }
    // Receive buffers of these sizes, one chain.
    Posted post_rx(const std::vector<uint32_t>& sizes) { return offer(rx, rx_next, {}, sizes); }
    // A transmit chain made of these pieces.
    Posted post_tx(const std::vector<Bytes>& pieces) { return offer(tx, tx_next, pieces, {}); }
    // A receive chain of one indirect table of `count` writable buffers of
    // `size` bytes each (needs INDIRECT_DESC); uses one descriptor.
    Posted post_rx_indirect(uint32_t count, uint32_t size) {
        Posted posted{static_cast<uint16_t>(rx_next % VirtioNet::kQueueSize), {}};
        const uint64_t table = allocate(16 * uint64_t{count});
        for (uint32_t i = 0; i < count; ++i) {
            const uint64_t address = allocate(size);
            posted.addresses.push_back(address);
            const auto flags = static_cast<uint16_t>(kWrite | (i + 1 < count ? kNext : 0));
            test_helpers::put_descriptor(memory, table + 16 * uint64_t{i}, address, size, flags,
                                         static_cast<uint16_t>(i + 1));
        }
        rx.descriptor(posted.head, table, 16 * count, split_ring::kDescIndirect);
        ++rx_next;
        rx.offer(posted.head);
        return posted;
    }
    // Fills the device's end of the tap until a write would block; the
    // host's next host_receive()s return the filler.
    void fill_tap() {
        const uint8_t byte = 0;
        while (::send(device_fd, &byte, 1, MSG_DONTWAIT) == 1) {
        }
        REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
    }
    void drain_host() {
        while (host_receive()) {
        }
    }
    void kick_rx() {
        std::lock_guard lock(net->device_lock());
        net->queue_notified(VirtioNet::kReceiveQueue);
    }
    void kick_tx() {
        std::lock_guard lock(net->device_lock());
        net->queue_notified(VirtioNet::kTransmitQueue);
    }

    // The host side of the tap.
    void host_send(const Bytes& frame) {
        REQUIRE(::send(peer.get(), frame.data(), frame.size(), MSG_DONTWAIT) == static_cast<ssize_t>(frame.size()));
    }
    std::optional<Bytes> host_receive() {
        Bytes buffer(70000);
        const ssize_t n = ::recv(peer.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (n < 0) return std::nullopt;
        buffer.resize(static_cast<size_t>(n));
        return buffer;
    }
    // Size of the next frame waiting for the device, if any (not consumed).
    std::optional<size_t> waiting_for_device() const {
        uint8_t byte = 0;
        const ssize_t n = ::recv(device_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) return std::nullopt;
        return static_cast<size_t>(n);
    }
    bool polls_rx() const { return (watcher.interest & EventSources::kReadable) != 0; }
    bool polls_tx() const { return (watcher.interest & EventSources::kWritable) != 0; }

    uint64_t features;
    GuestMemory memory = GuestMemory::allocate(kRamSize);
    TapRecord record;
    FakeWatcher watcher;
    test_helpers::RecordingSignals signals;
    UniqueFd peer;
    int device_fd = -1;  // owned by the device's FakeTap
    std::vector<VirtQueue> queues;
    test_helpers::RingDriver rx{memory, kRxPfn, VirtioNet::kQueueSize};
    test_helpers::RingDriver tx{memory, kTxPfn, VirtioNet::kQueueSize};
    uint32_t rx_next = 0;
    uint32_t tx_next = 0;
    uint64_t next_free = kData;
    std::unique_ptr<VirtioNet> net;  // last: goes first
};

}  // namespace net_rig
