// TapDevice and VirtioNet on a real tap: as root only, in a network
// namespace private to one test thread (unshare(CLONE_NEWNET)), which
// vanishes with the thread and the fds. Elsewhere the test says why it did
// nothing. Frames cross both ways byte-exact with the 12-byte header.

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <thread>

#include "net_rig.h"
#include "vmm/core/error.h"
#include "vmm/core/event_loop.h"
#include "vmm/backends/net/tap_device.h"

using namespace minikvm;
using namespace net_rig;

namespace {

constexpr uint16_t kEtherType = 0x88b5;  // IEEE "local experimental": nothing else sends it

bool wait_until(const std::function<bool()>& condition) {
    for (int i = 0; i < 1000; ++i) {
        if (condition()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return condition();
}

Bytes ethernet_frame(uint8_t dst_last, uint8_t src_last, size_t payload, uint32_t seed) {
    Bytes frame = {0x52, 0x54, 0, 0, 0, dst_last, 0x52, 0x54, 0, 0, 0, src_last, kEtherType >> 8, kEtherType & 0xff};
    const Bytes body = pattern(payload, seed);
    frame.insert(frame.end(), body.begin(), body.end());
    return frame;
}

}  // namespace

TEST_CASE("tap: frames cross a real tap both ways, in a private network namespace", "[net][tap]") {
    bool isolated = false;
    std::string problem;
    std::exception_ptr failure;  // a failed REQUIRE, carried back to Catch's thread
    EventLoop loop;
    // Everything that touches the namespace runs on this thread.
    std::thread worker([&] { try {
        if (::unshare(CLONE_NEWNET) != 0) return;  // not root: nothing to do here
        isolated = true;
        std::unique_ptr<TapDevice> tap;
        try {
            tap = std::make_unique<TapDevice>(TapDevice::open("mkvmtest0"));
        } catch (const VmmError& error) {
            problem = error.what();
            return;
        }
        CHECK(tap->created());
        const unsigned index = ::if_nametoindex("mkvmtest0");
        REQUIRE(index != 0);
        // No IPv6 chatter (router solicitations...) on the link: only our frames.
        std::ofstream("/proc/sys/net/ipv6/conf/mkvmtest0/disable_ipv6") << "1\n";
        UniqueFd control(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        ifreq up{};
        std::strcpy(up.ifr_name, "mkvmtest0");
        up.ifr_flags = IFF_UP;
        REQUIRE(::ioctl(control.get(), SIOCSIFFLAGS, &up) == 0);
        // The host's end: raw frames of our EtherType on the interface.
        UniqueFd host(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kEtherType)));
        REQUIRE(host);
        sockaddr_ll where{};
        where.sll_family = AF_PACKET;
        where.sll_protocol = htons(kEtherType);
        where.sll_ifindex = static_cast<int>(index);
        REQUIRE(::bind(host.get(), reinterpret_cast<sockaddr*>(&where), sizeof where) == 0);

        // A driver with MRG_RXBUF and checksum/TSO offloads both ways.
        Rig rig(kMac | kMrg | kCsum | kGuestCsum | kGuestTso4 | kHostTso4 | kEventIdx, false, &loop);
        rig.net.reset();
        rig.net = std::make_unique<VirtioNet>("virtio-net-tap", std::move(tap), MacAddress{{0x52, 0x54, 0, 0, 0, 2}},
                                              loop);
        rig.activate();
        CHECK(rig.net->tap_offloads() == (NetBackend::kOffloadCsum | NetBackend::kOffloadTso4));

        // Host -> guest.
        std::vector<Rig::Posted> posted;
        for (int i = 0; i < 4; ++i) posted.push_back(rig.post_rx({2048}));
        rig.kick_rx();
        const Bytes in = ethernet_frame(2, 1, 1000, 1);
        REQUIRE(::send(host.get(), in.data(), in.size(), 0) == static_cast<ssize_t>(in.size()));
        REQUIRE(wait_until([&] { return rig.rx.used_index() >= 1; }));
        const auto [head, length] = rig.rx.used_element(0);
        CHECK(head == posted[0].head);
        CHECK(length == 12 + in.size());
        const Bytes header = rig.guest(posted[0].addresses[0], 12);
        CHECK(header[1] == net::kGsoNone);
        CHECK(header[10] == 1);  // num_buffers
        CHECK(header[11] == 0);
        CHECK(rig.guest(posted[0].addresses[0] + 12, in.size()) == in);

        // Guest -> host, header in its own descriptor.
        const Bytes out = ethernet_frame(1, 2, 1400, 2);
        rig.post_tx({Bytes(12, 0), out});
        rig.kick_tx();
        Bytes seen(2048);
        ssize_t n = -1;
        REQUIRE(wait_until([&] {
            n = ::recv(host.get(), seen.data(), seen.size(), MSG_DONTWAIT);
            return n >= 0;
        }));
        seen.resize(static_cast<size_t>(n));
        CHECK(seen == out);
        CHECK(rig.tx.used_index() == 1);
        const VirtioNet::Counters counters = rig.net->counters();
        CHECK(counters.tx_packets == 1);
        CHECK(counters.tx_dropped == 0);
        CHECK(counters.rx_dropped == 0);
        rig.reset();
    } catch (...) {
        failure = std::current_exception();
    } });
    worker.join();
    if (failure) std::rethrow_exception(failure);
    if (!isolated) WARN("not run: no private network namespace (needs CAP_SYS_ADMIN and CAP_NET_ADMIN)");
    CHECK(problem.empty());
}
