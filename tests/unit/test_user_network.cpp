// UserNetwork with the real libslirp on a real EventLoop, the test standing
// where VirtioNet stands (send() from a thread of its own, as a vCPU's
// transmit does, and the device end of the socketpair): the stack
// answers ARP for the host address and DHCP with 10.0.2.15, a hostfwd
// connection from this process reaches the guest as a SYN, and a hostfwd
// that cannot listen is one clear error. All traffic stays on loopback.

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <exception>
#include <fstream>
#include <thread>

#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <vector>

#include "vmm/backends/net/software_offloads.h"
#include "vmm/backends/net/user_network.h"
#include "vmm/core/error.h"
#include "vmm/core/event_loop.h"
#include "vmm/core/unique_fd.h"
#include "temp_file.h"

using namespace minikvm;
using Bytes = std::vector<uint8_t>;

namespace {

const uint8_t kGuestMac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
const uint8_t kGuestIp[4] = {10, 0, 2, 15};
const uint8_t kHostIp[4] = {10, 0, 2, 2};

void put16(Bytes& b, size_t at, uint16_t v) {
    b[at] = static_cast<uint8_t>(v >> 8);
    b[at + 1] = static_cast<uint8_t>(v);
}
uint16_t get16(const Bytes& b, size_t at) { return static_cast<uint16_t>((b[at] << 8) | b[at + 1]); }

// Transmits `packet` (header and frame) as VirtioNet does: send() with the
// header and the frame in separate pieces, then sent().
void transmit(UserNetwork& network, const Bytes& packet, size_t header_size = net::kHeaderSize) {
    const iovec pieces[2] = {{const_cast<uint8_t*>(packet.data()), header_size},
                             {const_cast<uint8_t*>(packet.data()) + header_size, packet.size() - header_size}};
    REQUIRE(network.send(pieces) == static_cast<ssize_t>(packet.size()));
    network.sent();
}

// The guest side: frames behind a 10-byte virtio-net header.
struct Guest {
    UserNetwork& network;
    int fd = network.fd();
    void send(const Bytes& frame) const {
        Bytes packet(net::kHeaderSize, 0);
        packet.insert(packet.end(), frame.begin(), frame.end());
        transmit(network, packet);
    }
    // The next frame that `match` accepts within 5 s, the rest skipped.
    std::optional<Bytes> receive(const std::function<bool(const Bytes&)>& match) const {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            Bytes buffer(70000);
            const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
            if (n < static_cast<ssize_t>(net::kHeaderSize)) continue;
            Bytes frame(buffer.begin() + net::kHeaderSize, buffer.begin() + n);
            if (match(frame)) return frame;
        }
        return std::nullopt;
    }
};

Bytes ethernet(const uint8_t* destination, uint16_t type, size_t payload) {
    Bytes f(14 + payload, 0);
    std::memcpy(f.data(), destination, 6);
    std::memcpy(f.data() + 6, kGuestMac, 6);
    put16(f, 12, type);
    return f;
}

const uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// ARP request from the guest: who has `target`?
Bytes arp_request(const uint8_t* target) {
    Bytes f = ethernet(kBroadcast, 0x0806, 28);
    put16(f, 14, 1);       // Ethernet
    put16(f, 16, 0x0800);  // IPv4
    f[18] = 6;
    f[19] = 4;
    put16(f, 20, 1);  // request
    std::memcpy(&f[22], kGuestMac, 6);
    std::memcpy(&f[28], kGuestIp, 4);
    std::memcpy(&f[38], target, 4);
    return f;
}

Bytes arp_reply_to(const Bytes& request) {
    Bytes f = ethernet(&request[6], 0x0806, 28);
    std::memcpy(&f[14], &request[14], 6);
    put16(f, 20, 2);
    std::memcpy(&f[22], kGuestMac, 6);
    std::memcpy(&f[28], kGuestIp, 4);
    std::memcpy(&f[32], &request[22], 10);
    return f;
}

bool is_arp(const Bytes& f, uint16_t op, const uint8_t* target) {
    return f.size() >= 42 && get16(f, 12) == 0x0806 && get16(f, 20) == op && std::memcmp(&f[38], target, 4) == 0;
}

// DHCPDISCOVER from 0.0.0.0:68 to the broadcast address.
Bytes dhcp_discover() {
    const size_t bootp = 240 + 4;  // fixed part, magic cookie, message type option, end
    Bytes f = ethernet(kBroadcast, 0x0800, 20 + 8 + bootp);
    const size_t ip = 14, udp = 34, b = 42;
    f[ip] = 0x45;
    put16(f, ip + 2, static_cast<uint16_t>(20 + 8 + bootp));
    f[ip + 8] = 64;
    f[ip + 9] = 17;
    std::memset(&f[ip + 16], 0xff, 4);
    put16(f, ip + 10, net::checksum_finish(net::checksum_add(0, std::span(f).subspan(ip, 20))));
    put16(f, udp, 68);
    put16(f, udp + 2, 67);
    put16(f, udp + 4, static_cast<uint16_t>(8 + bootp));
    f[b] = 1;  // BOOTREQUEST
    f[b + 1] = 1;
    f[b + 2] = 6;
    f[b + 4] = 0x5a;  // xid
    std::memcpy(&f[b + 28], kGuestMac, 6);
    const uint8_t cookie[4] = {99, 130, 83, 99};
    std::memcpy(&f[b + 236], cookie, 4);
    f[b + 240] = 53;  // message type: DISCOVER
    f[b + 241] = 1;
    f[b + 242] = 1;
    f[b + 243] = 255;
    return f;
}

// Binds socket `s` to a port of the kernel's choosing on 127.0.0.1; that port.
uint16_t bind_loopback(int s) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t length = sizeof a;
    REQUIRE(::getsockname(s, reinterpret_cast<sockaddr*>(&a), &length) == 0);
    return ntohs(a.sin_port);
}

// A port nobody listens on now, for a hostfwd.
uint16_t free_port() {
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    return bind_loopback(s.get());
}

HostForward forward_to(uint16_t host_port, uint16_t guest_port) {
    HostForward f;
    inet_pton(AF_INET, "127.0.0.1", &f.host_address);
    f.host_port = host_port;
    f.guest_port = guest_port;
    f.text = "tcp::" + std::to_string(host_port) + "-:" + std::to_string(guest_port);
    return f;
}

}  // namespace

TEST_CASE("user network: the host address answers ARP and DHCP offers 10.0.2.15", "[net][slirp]") {
    EventLoop loop;
    auto network = UserNetwork::open({}, loop);
    const Guest guest{*network};

    guest.send(arp_request(kHostIp));
    const std::optional<Bytes> reply = guest.receive([](const Bytes& f) { return is_arp(f, 2, kGuestIp); });
    REQUIRE(reply);
    CHECK(std::memcmp(&(*reply)[28], kHostIp, 4) == 0);  // sender: 10.0.2.2
    CHECK(std::memcmp(&(*reply)[0], kGuestMac, 6) == 0);

    guest.send(dhcp_discover());
    const std::optional<Bytes> offer = guest.receive([](const Bytes& f) {
        return f.size() > 42 + 240 && get16(f, 12) == 0x0800 && f[23] == 17 && get16(f, 36) == 68;
    });
    REQUIRE(offer);
    CHECK(std::memcmp(&(*offer)[42 + 16], kGuestIp, 4) == 0);  // yiaddr
    CHECK((*offer)[42 + 4] == 0x5a);                              // our xid

    const UserNetwork::Counters counters = network->counters();
    CHECK(counters.to_slirp_frames == 2);
    CHECK(counters.to_guest_frames >= 2);
    CHECK(counters.unfinished_dropped == 0);
    CHECK_THAT(network->state_report(), Catch::Contains("2 frames to libslirp"));

    // The device's end carries frames to the guest only.
    const uint8_t byte = 0;
    CHECK(::send(network->fd(), &byte, 1, MSG_NOSIGNAL) == -1);
    CHECK(errno == EPIPE);
    // More than a header and the largest frame: refused as a tap would.
    Bytes huge(net::kMergeableHeaderSize + net::kMaxFrame + 1, 0);
    const iovec piece{huge.data(), huge.size()};
    CHECK(network->send(std::span(&piece, 1)) == -1);
    CHECK(errno == EMSGSIZE);
    CHECK(network->counters().to_slirp_frames == 2);
}

TEST_CASE("user network: a hostfwd connection reaches the guest's port as a SYN", "[net][slirp]") {
    EventLoop loop;
    const uint16_t port = free_port();
    auto network = UserNetwork::open({forward_to(port, 2222)}, loop);
    const Guest guest{*network};

    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int rc = ::connect(client.get(), reinterpret_cast<sockaddr*>(&to), sizeof to);
    REQUIRE((rc == 0 || errno == EINPROGRESS));

    // libslirp may first ask who 10.0.2.15 is: answer as the guest.
    const std::optional<Bytes> syn = guest.receive([&](const Bytes& f) {
        if (is_arp(f, 1, kGuestIp)) {
            guest.send(arp_reply_to(f));
            return false;
        }
        return f.size() >= 54 && get16(f, 12) == 0x0800 && f[23] == 6 && get16(f, 36) == 2222 &&
               (f[47] & 0x02) != 0;
    });
    REQUIRE(syn);
    CHECK(std::memcmp(&(*syn)[30], kGuestIp, 4) == 0);
}

TEST_CASE("user network: a hostfwd on a port in use is one clear error", "[net][slirp]") {
    EventLoop loop;
    UniqueFd holder(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(holder.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(holder.get(), 1) == 0);
    socklen_t length = sizeof a;
    REQUIRE(::getsockname(holder.get(), reinterpret_cast<sockaddr*>(&a), &length) == 0);
    const uint16_t port = ntohs(a.sin_port);
    try {
        auto network = UserNetwork::open({forward_to(port, 80)}, loop);
        FAIL("a second listener on the port was accepted");
    } catch (const VmmError& error) {
        CHECK(error.code() == ExitCode::BadDevice);
        CHECK(std::string(error.what()) ==
              "--net user,hostfwd=tcp::" + std::to_string(port) + "-:80: cannot listen on 127.0.0.1:" +
                  std::to_string(port) + ": the port is in use");
    }
}

TEST_CASE("user network: a TSO super-packet from the guest is segmented before libslirp sees it", "[net][slirp]") {
    EventLoop loop;
    auto network = UserNetwork::open({}, loop);
    // A TCPv4 super-packet to a closed port on the host: three segments,
    // each of which libslirp takes (and answers however it likes).
    const uint8_t slirp_mac[6] = {0x52, 0x55, 10, 0, 2, 2};
    Bytes f = ethernet(slirp_mac, 0x0800, 20 + 20 + 3000);
    f[14] = 0x45;
    f[14 + 8] = 64;
    f[14 + 9] = 6;
    std::memcpy(&f[14 + 12], kGuestIp, 4);
    std::memcpy(&f[14 + 16], kHostIp, 4);
    put16(f, 34, 40000);
    put16(f, 36, 9);
    f[34 + 12] = 0x50;
    f[34 + 13] = 0x18;
    Bytes packet(net::kHeaderSize, 0);
    packet[0] = net::kFlagNeedsCsum;
    packet[1] = net::kGsoTcpV4;
    packet[4] = static_cast<uint8_t>(1000 & 0xff);  // gso_size, little-endian
    packet[5] = static_cast<uint8_t>(1000 >> 8);
    packet.insert(packet.end(), f.begin(), f.end());
    // In the call: nothing waits for the event loop.
    transmit(*network, packet);
    CHECK(network->counters().to_slirp_frames == 3);
    CHECK(network->counters().unfinished_dropped == 0);
}

namespace {

// A UDP datagram from the guest (10.0.2.15:port) to `to`:53 carrying `payload`.
Bytes udp_from_guest(const uint8_t* to_mac, const uint8_t* to_ip, uint16_t port, uint16_t to_port, const Bytes& payload) {
    Bytes f = ethernet(to_mac, 0x0800, 20 + 8 + payload.size());
    const size_t ip = 14, udp = 34;
    f[ip] = 0x45;
    put16(f, ip + 2, static_cast<uint16_t>(20 + 8 + payload.size()));
    f[ip + 8] = 64;
    f[ip + 9] = 17;
    std::memcpy(&f[ip + 12], kGuestIp, 4);
    std::memcpy(&f[ip + 16], to_ip, 4);
    put16(f, ip + 10, net::checksum_finish(net::checksum_add(0, std::span(f).subspan(ip, 20))));
    put16(f, udp, port);
    put16(f, udp + 2, to_port);
    put16(f, udp + 4, static_cast<uint16_t>(8 + payload.size()));
    std::copy(payload.begin(), payload.end(), f.begin() + 42);
    return f;
}

}  // namespace

TEST_CASE("user network: UDP to 10.0.2.2 reaches the host's loopback, and the host's answer comes back",
          "[net][slirp]") {
    // send() runs on this thread while the loop runs libslirp's sockets on
    // its own, as a vCPU's transmit does; the socket libslirp opens for the
    // flow is polled from sent() on, so the answer is heard.
    EventLoop loop;
    auto network = UserNetwork::open({}, loop);
    const Guest guest{*network};
    guest.send(arp_request(kHostIp));  // libslirp learns our MAC
    REQUIRE(guest.receive([](const Bytes& f) { return is_arp(f, 2, kGuestIp); }));

    UniqueFd host(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const uint16_t port = bind_loopback(host.get());
    const uint8_t slirp_mac[6] = {0x52, 0x55, 10, 0, 2, 2};
    constexpr int kDatagrams = 50;  // well inside the host socket's default buffer
    for (int i = 0; i < kDatagrams; ++i) {
        Bytes payload(1000, static_cast<uint8_t>(i));
        guest.send(udp_from_guest(slirp_mac, kHostIp, 40000, port, payload));
    }
    int arrived = 0;
    sockaddr_in from{};
    for (;;) {
        pollfd p{.fd = host.get(), .events = POLLIN, .revents = 0};
        if (::poll(&p, 1, arrived == 0 ? 5000 : 200) != 1) break;
        Bytes buffer(2000);
        socklen_t from_length = sizeof from;
        const ssize_t n = ::recvfrom(host.get(), buffer.data(), buffer.size(), 0, reinterpret_cast<sockaddr*>(&from),
                                     &from_length);
        REQUIRE(n == 1000);
        CHECK(buffer[0] == static_cast<uint8_t>(arrived));  // in order
        ++arrived;
    }
    CHECK(arrived == kDatagrams);  // loopback with room to spare: none lost
    REQUIRE(arrived > 0);

    const Bytes answer = {'p', 'o', 'n', 'g'};
    REQUIRE(::sendto(host.get(), answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&from), sizeof from) ==
            static_cast<ssize_t>(answer.size()));
    const std::optional<Bytes> reply = guest.receive([&](const Bytes& f) {
        return f.size() >= 42 && get16(f, 12) == 0x0800 && f[23] == 17 && get16(f, 34) == port &&
               get16(f, 36) == 40000;
    });
    REQUIRE(reply);
    CHECK(std::memcmp(&(*reply)[26], kHostIp, 4) == 0);  // from 10.0.2.2
    CHECK(Bytes(reply->begin() + 42, reply->end()) == answer);
    CHECK(network->counters().to_slirp_frames == 1 + kDatagrams);

    // A burst the other way, queued on libslirp's socket at once: a wake
    // takes several passes (one datagram each); all arrive, in order.
    for (int i = 0; i < kDatagrams; ++i) {
        const Bytes datagram(500, static_cast<uint8_t>(i));
        REQUIRE(::sendto(host.get(), datagram.data(), datagram.size(), 0, reinterpret_cast<sockaddr*>(&from),
                         sizeof from) == static_cast<ssize_t>(datagram.size()));
    }
    for (int i = 0; i < kDatagrams; ++i) {
        const std::optional<Bytes> burst = guest.receive([&](const Bytes& f) {
            return f.size() == 42 + 500 && get16(f, 12) == 0x0800 && f[23] == 17 && get16(f, 36) == 40000;
        });
        REQUIRE(burst);
        CHECK((*burst)[42] == static_cast<uint8_t>(i));
    }
}

TEST_CASE("user network: DNS to 10.0.2.3 is answered by the host's resolver", "[net][slirp]") {
    // The host's resolver is ours: a private network and mount namespace on
    // one thread (root only), where /etc/resolv.conf names 127.0.0.1 and
    // this test answers on its port 53. Threads started here (the event
    // loop's) inherit both namespaces.
    bool isolated = false;
    std::exception_ptr failure;
    const std::string conf = "nameserver 127.0.0.1\n";
    TempFile resolv_conf(std::vector<uint8_t>(conf.begin(), conf.end()));
    std::thread worker([&] {
        try {
            if (::unshare(CLONE_NEWNET | CLONE_NEWNS) != 0) return;  // not root: nothing to do here
            isolated = true;
            REQUIRE(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0);
            REQUIRE(::mount(resolv_conf.path().c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr) == 0);
            UniqueFd control(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
            ifreq up{};
            std::strcpy(up.ifr_name, "lo");
            up.ifr_flags = IFF_UP;
            REQUIRE(::ioctl(control.get(), SIOCSIFFLAGS, &up) == 0);
            UniqueFd resolver(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
            sockaddr_in at{};
            at.sin_family = AF_INET;
            at.sin_port = htons(53);
            at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            REQUIRE(::bind(resolver.get(), reinterpret_cast<sockaddr*>(&at), sizeof at) == 0);

            EventLoop loop;
            auto network = UserNetwork::open({}, loop);
            const Guest guest{*network};
            guest.send(arp_request(kHostIp));  // libslirp learns our MAC
            REQUIRE(guest.receive([](const Bytes& f) { return is_arp(f, 2, kGuestIp); }));

            // "minikvm.test", type A, class IN, recursion desired.
            const Bytes query = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'm', 'i', 'n', 'i', 'k',
                                 'v', 'm', 4, 't', 'e', 's', 't', 0, 0, 1, 0, 1};
            const uint8_t dns_ip[4] = {10, 0, 2, 3};
            const uint8_t dns_mac[6] = {0x52, 0x55, 10, 0, 2, 3};
            guest.send(udp_from_guest(dns_mac, dns_ip, 40053, 53, query));

            pollfd p{.fd = resolver.get(), .events = POLLIN, .revents = 0};
            REQUIRE(::poll(&p, 1, 5000) == 1);
            Bytes asked(512);
            sockaddr_in from{};
            socklen_t from_length = sizeof from;
            const ssize_t n = ::recvfrom(resolver.get(), asked.data(), asked.size(), 0,
                                         reinterpret_cast<sockaddr*>(&from), &from_length);
            REQUIRE(n == static_cast<ssize_t>(query.size()));
            asked.resize(static_cast<size_t>(n));
            CHECK(asked == query);
            // The answer: minikvm.test is 10.0.2.99.
            Bytes answer = query;
            answer[2] = 0x81;
            answer[3] = 0x80;
            answer[7] = 1;
            const Bytes record = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 2, 99};
            answer.insert(answer.end(), record.begin(), record.end());
            REQUIRE(::sendto(resolver.get(), answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&from),
                             from_length) == static_cast<ssize_t>(answer.size()));

            const std::optional<Bytes> reply = guest.receive([](const Bytes& f) {
                return f.size() >= 42 && get16(f, 12) == 0x0800 && f[23] == 17 && get16(f, 34) == 53 &&
                       get16(f, 36) == 40053;
            });
            REQUIRE(reply);
            CHECK(std::memcmp(&(*reply)[26], dns_ip, 4) == 0);  // from 10.0.2.3
            CHECK(Bytes(reply->begin() + 42, reply->end()) == answer);
        } catch (...) {
            failure = std::current_exception();
        }
    });
    worker.join();
    if (failure) std::rethrow_exception(failure);
    if (!isolated) WARN("not root: no private namespaces for a resolver of our own; DNS forwarding not checked");
}
