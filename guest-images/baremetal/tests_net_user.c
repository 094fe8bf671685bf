/* virtio-net on minikvm's --net user (libslirp), from the driver's side:
 * the stack answers ARP for the host (10.0.2.2) and echo requests to it,
 * answers a DHCPDISCOVER whose UDP checksum the device had to finish
 * (NEEDS_CSUM: libslirp drops a UDP datagram with a wrong checksum), and
 * answers every segment the device cut from a TSO super-packet (a TCP
 * segment with a wrong checksum is dropped silently; a good one to a port
 * nobody has open gets a RST). Needs the runner's --net user; skips
 * without a virtio-net, fails (saying so) on a card with no such stack
 * behind it. Not part of test=all: the other net tests want a tap. */
#include "clock.h"
#include "net.h"
#include "net_peer.h"
#include "net_user.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

static bool is_dhcp_offer(const uint8_t* f, int len) {
    return len >= 42 + 240 && net_user_get16(f + 12) == 0x0800 && f[23] == 17 && net_user_get16(f + 36) == 68 &&
           f[42] == 2;
}
static bool is_rst(const uint8_t* f, int len) {
    return len >= 54 && net_user_get16(f + 12) == 0x0800 && f[23] == 6 && net_user_get16(f + 36) == 40001 &&
           (f[47] & 0x04);
}

static bool test_net_user_arp_ping(void) {
    if (!net_find()) return skip("no virtio-net (run minikvm with --net user)");
    if (!net_user_bring_up()) return false;
    static uint8_t ping[14 + 20 + 8 + 56];
    const uint32_t ping_len = net_user_echo_request(ping, 1);
    CHECK(net_user_send(ping, ping_len), "echo request not sent");
    uint8_t* f = net_user_rx_frame();
    const int len = net_user_wait_for(f, net_user_is_echo_reply, NET_USER_REPLY_TIMEOUT_MS);
    CHECK(len > 0, "no echo reply from 10.0.2.2 in %u ms", NET_USER_REPLY_TIMEOUT_MS);
    CHECK(len >= 42 + 56 && memcmp(f + 42, ping + 42, 56) == 0, "the echo reply's payload differs");
    const uint8_t* mac = net_user_host_mac;
    info("host MAC %x:%x:%x:%x:%x:%x answered ARP and ping", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    return true;
}

static bool test_net_user_dhcp_partial_csum(void) {
    if (!net_find()) return skip("no virtio-net (run minikvm with --net user)");
    if (!net_user_bring_up()) return false;
    enum { BOOTP = 240 + 4 };
    static uint8_t f[14 + 20 + 8 + BOOTP];
    static const uint8_t zero_ip[4] = {0}, all_ip[4] = {255, 255, 255, 255};
    memset(f, 0, sizeof f);
    net_user_ethernet(f, net_user_broadcast, 0x0800);
    net_user_ipv4(f, 17, 8 + BOOTP, zero_ip, all_ip);
    uint8_t* udp = f + 34;
    net_user_put16(udp, 68);
    net_user_put16(udp + 2, 67);
    net_user_put16(udp + 4, 8 + BOOTP);
    uint8_t* b = udp + 8;
    b[0] = 1, b[1] = 1, b[2] = 6;
    net_user_put32(b + 4, 0x6d6b766d); /* xid */
    memcpy(b + 28, net_dev.mac, 6);
    static const uint8_t cookie_and_options[8] = {99, 130, 83, 99, 53, 1, 1, 255};
    memcpy(b + 236, cookie_and_options, 8);
    /* Only the pseudo-header's sum: the device must finish the rest. */
    net_user_put16(udp + 6, csum_fold(net_user_pseudo(f, 8 + BOOTP)));
    const struct net_hdr hdr = {.flags = NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = UDP_CSUM_OFFSET};
    CHECK(net_transmit(&hdr, f, sizeof f, NET_LAYOUT_SPLIT), "DHCPDISCOVER not sent");
    uint8_t* r = net_user_rx_frame();
    const int len = net_user_wait_for(r, is_dhcp_offer, NET_USER_REPLY_TIMEOUT_MS);
    CHECK(len > 0, "no DHCPOFFER in %u ms: was the partial UDP checksum finished?", NET_USER_REPLY_TIMEOUT_MS);
    CHECK(net_user_get32(r + 42 + 4) == 0x6d6b766d, "the offer has another transaction id");
    CHECK(memcmp(r + 42 + 16, net_user_guest_ip, 4) == 0, "offered %u.%u.%u.%u, not 10.0.2.15", r[58], r[59], r[60], r[61]);
    info("DHCPOFFER 10.0.2.15 for a datagram whose checksum the device finished");
    return true;
}

static bool test_net_user_tso(void) {
    if (!net_find()) return skip("no virtio-net (run minikvm with --net user)");
    if (!net_user_bring_up()) return false;
    if (!(net_dev.features & BIT(NET_F_HOST_TSO4))) return skip("the card offers no HOST_TSO4");
    /* 3 x 1000 bytes to port 9 of the host, on no connection: each good
     * segment earns a RST. */
    enum { PAYLOAD = 3000, MSS = 1000 };
    static uint8_t f[TCP_HEADERS + PAYLOAD];
    net_user_ethernet(f, net_user_host_mac, 0x0800);
    net_user_ipv4(f, 6, 20 + PAYLOAD, net_user_guest_ip, net_user_host_ip);
    uint8_t* tcp = f + 34;
    memset(tcp, 0, 20);
    net_user_put16(tcp, 40001);
    net_user_put16(tcp + 2, 9);
    net_user_put32(tcp + 4, 0x10000000);
    net_user_put32(tcp + 8, 0x20000000);
    tcp[12] = 0x50;
    tcp[13] = 0x18; /* ACK, PSH */
    net_user_put16(tcp + 14, 65535);
    for (unsigned i = 0; i < PAYLOAD; ++i) f[TCP_HEADERS + i] = peer_pattern(9, i);
    net_user_put16(tcp + TCP_CSUM_OFFSET, csum_fold(net_user_pseudo(f, 20 + PAYLOAD)));
    const struct net_hdr hdr = {.flags = NET_HDR_F_NEEDS_CSUM,
                                .gso_type = NET_HDR_GSO_TCPV4,
                                .hdr_len = TCP_HEADERS,
                                .gso_size = MSS,
                                .csum_start = 34,
                                .csum_offset = TCP_CSUM_OFFSET};
    CHECK(net_transmit(&hdr, f, sizeof f, NET_LAYOUT_SPLIT), "TSO frame not sent");
    uint8_t* r = net_user_rx_frame();
    unsigned resets = 0;
    while (net_user_wait_for(r, is_rst, resets ? 500 : NET_USER_REPLY_TIMEOUT_MS) > 0) ++resets;
    CHECK(resets > 0, "no RST for any segment in %u ms: were the segments' checksums right?",
          NET_USER_REPLY_TIMEOUT_MS);
    info("%u RSTs for a 3-segment TSO frame", resets);
    return true;
}

const struct test net_user_tests[] = {
    {"net-user-arp-ping", test_net_user_arp_ping, "--net user: ARP and ICMP echo from the host address 10.0.2.2"},
    {"net-user-dhcp-csum", test_net_user_dhcp_partial_csum,
     "--net user: a DHCPDISCOVER with a partial UDP checksum gets its offer"},
    {"net-user-tso", test_net_user_tso, "--net user: a TSO super-packet is segmented with good checksums"},
};
const unsigned net_user_test_count = ARRAY_SIZE(net_user_tests);
