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
#include "runtime.h"
#include "tests.h"
#include "x86.h"

#define REPLY_TIMEOUT_MS 3000

static const uint8_t guest_ip[4] = {10, 0, 2, 15}, host_ip[4] = {10, 0, 2, 2};
static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static uint8_t host_mac[6]; /* learnt by ARP */

static void put16(uint8_t* p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
static void put32(uint8_t* p, uint32_t v) { put16(p, (uint16_t)(v >> 16)), put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t* p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t* p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

static void ethernet(uint8_t* f, const uint8_t* to, uint16_t type) {
    memcpy(f, to, 6);
    memcpy(f + 6, net_dev.mac, 6);
    put16(f + 12, type);
}

/* An IPv4 header at f + 14 from `from` to `to`, with its checksum. */
static void ipv4(uint8_t* f, uint8_t protocol, uint32_t l4_len, const uint8_t* from, const uint8_t* to) {
    uint8_t* ip = f + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(20 + l4_len));
    put16(ip + 4, 0x4d4b);
    ip[8] = 64;
    ip[9] = protocol;
    memcpy(ip + 12, from, 4);
    memcpy(ip + 16, to, 4);
    put16(ip + 10, (uint16_t)~csum_fold(csum_add(0, ip, 20)));
}

/* The pseudo-header sum of the IPv4 packet at f + 14. */
static uint32_t pseudo(const uint8_t* f, uint32_t l4_len) {
    const uint8_t* ip = f + 14;
    return csum_add(0, ip + 12, 8) + ip[9] + l4_len;
}

static bool send_plain(const uint8_t* frame, uint32_t len) {
    const struct net_hdr hdr = {0};
    return net_transmit(&hdr, frame, len, NET_LAYOUT_SPLIT);
}

/* Waits for a frame `match` accepts; others are skipped. Its length, or -1. */
static uint64_t now_ms(void) { return now_ns() / 1000000u; }

static int wait_for(uint8_t* frame, bool (*match)(const uint8_t*, int), uint64_t timeout_ms) {
    const uint64_t end = now_ms() + timeout_ms;
    for (uint64_t now = now_ms(); now < end; now = now_ms()) {
        struct net_hdr hdr;
        const int len = net_receive(&hdr, frame, NET_MAX_GSO_FRAME, end - now, true);
        if (len == -2) return -1;
        if (len > 0 && match(frame, len)) return len;
    }
    return -1;
}

static bool is_arp_reply(const uint8_t* f, int len) {
    return len >= 42 && get16(f + 12) == 0x0806 && get16(f + 20) == 2 && memcmp(f + 28, host_ip, 4) == 0;
}
static bool is_echo_reply(const uint8_t* f, int len) {
    return len >= 42 && get16(f + 12) == 0x0800 && f[23] == 1 && f[34] == 0 && get16(f + 38) == 0x6b76;
}
static bool is_dhcp_offer(const uint8_t* f, int len) {
    return len >= 42 + 240 && get16(f + 12) == 0x0800 && f[23] == 17 && get16(f + 36) == 68 && f[42] == 2;
}
static bool is_rst(const uint8_t* f, int len) {
    return len >= 54 && get16(f + 12) == 0x0800 && f[23] == 6 && get16(f + 36) == 40001 && (f[47] & 0x04);
}

static uint8_t* rx_frame(void) {
    static uint8_t* buf;
    if (!buf) buf = alloc_zeroed(NET_MAX_GSO_FRAME, 64);
    return buf;
}

/* Starts the card with checksum and TSO offload and learns the host's MAC. */
static bool bring_up_user(void) {
    if (!net_find()) return false;
    if (!net_start(BIT(NET_F_MAC) | BIT(NET_F_CSUM) | BIT(NET_F_HOST_TSO4) | BIT(NET_F_STATUS))) return false;
    if (!net_post_rx(net_dev.rx.size / 2, 12 + ETH_MAX_FRAME)) return false;
    static uint8_t arp[60];
    memset(arp, 0, sizeof arp);
    ethernet(arp, broadcast, 0x0806);
    put16(arp + 14, 1);
    put16(arp + 16, 0x0800);
    arp[18] = 6;
    arp[19] = 4;
    put16(arp + 20, 1);
    memcpy(arp + 22, net_dev.mac, 6);
    memcpy(arp + 28, guest_ip, 4);
    memcpy(arp + 38, host_ip, 4);
    CHECK(send_plain(arp, sizeof arp), "ARP request not sent");
    uint8_t* f = rx_frame();
    CHECK(wait_for(f, is_arp_reply, REPLY_TIMEOUT_MS) > 0,
          "no ARP reply for 10.0.2.2 in %u ms (is minikvm running with --net user?)", REPLY_TIMEOUT_MS);
    CHECK(memcmp(f, net_dev.mac, 6) == 0, "the ARP reply is not addressed to our MAC");
    memcpy(host_mac, f + 22, 6);
    return true;
}

static bool test_net_user_arp_ping(void) {
    if (!net_find()) return skip("no virtio-net (run minikvm with --net user)");
    if (!bring_up_user()) return false;
    static uint8_t ping[14 + 20 + 8 + 56];
    ethernet(ping, host_mac, 0x0800);
    ipv4(ping, 1, 8 + 56, guest_ip, host_ip);
    uint8_t* icmp = ping + 34;
    memset(icmp, 0, 8);
    icmp[0] = 8;
    put16(icmp + 4, 0x6b76);
    put16(icmp + 6, 1);
    for (unsigned i = 0; i < 56; ++i) icmp[8 + i] = peer_pattern(5, i);
    put16(icmp + 2, (uint16_t)~csum_fold(csum_add(0, icmp, 8 + 56)));
    CHECK(send_plain(ping, sizeof ping), "echo request not sent");
    uint8_t* f = rx_frame();
    const int len = wait_for(f, is_echo_reply, REPLY_TIMEOUT_MS);
    CHECK(len > 0, "no echo reply from 10.0.2.2 in %u ms", REPLY_TIMEOUT_MS);
    CHECK(len >= 42 + 56 && memcmp(f + 42, icmp + 8, 56) == 0, "the echo reply's payload differs");
    info("host MAC %x:%x:%x:%x:%x:%x answered ARP and ping", host_mac[0], host_mac[1], host_mac[2], host_mac[3],
         host_mac[4], host_mac[5]);
    return true;
}

static bool test_net_user_dhcp_partial_csum(void) {
    if (!net_find()) return skip("no virtio-net (run minikvm with --net user)");
    if (!bring_up_user()) return false;
    enum { BOOTP = 240 + 4 };
    static uint8_t f[14 + 20 + 8 + BOOTP];
    static const uint8_t zero_ip[4] = {0}, all_ip[4] = {255, 255, 255, 255};
    memset(f, 0, sizeof f);
    ethernet(f, broadcast, 0x0800);
    ipv4(f, 17, 8 + BOOTP, zero_ip, all_ip);
    uint8_t* udp = f + 34;
    put16(udp, 68);
    put16(udp + 2, 67);
    put16(udp + 4, 8 + BOOTP);
    uint8_t* b = udp + 8;
    b[0] = 1, b[1] = 1, b[2] = 6;
    put32(b + 4, 0x6d6b766d); /* xid */
    memcpy(b + 28, net_dev.mac, 6);
    static const uint8_t cookie_and_options[8] = {99, 130, 83, 99, 53, 1, 1, 255};
    memcpy(b + 236, cookie_and_options, 8);
    /* Only the pseudo-header's sum: the device must finish the rest. */
    put16(udp + 6, csum_fold(pseudo(f, 8 + BOOTP)));
    const struct net_hdr hdr = {.flags = NET_HDR_F_NEEDS_CSUM, .csum_start = 34, .csum_offset = UDP_CSUM_OFFSET};
    CHECK(net_transmit(&hdr, f, sizeof f, NET_LAYOUT_SPLIT), "DHCPDISCOVER not sent");
    uint8_t* r = rx_frame();
    const int len = wait_for(r, is_dhcp_offer, REPLY_TIMEOUT_MS);
    CHECK(len > 0, "no DHCPOFFER in %u ms: was the partial UDP checksum finished?", REPLY_TIMEOUT_MS);
    CHECK(get32(r + 42 + 4) == 0x6d6b766d, "the offer has another transaction id");
    CHECK(memcmp(r + 42 + 16, guest_ip, 4) == 0, "offered %u.%u.%u.%u, not 10.0.2.15", r[58], r[59], r[60], r[61]);
    info("DHCPOFFER 10.0.2.15 for a datagram whose checksum the device finished");
    return true;
}

static bool test_net_user_tso(void) {
    if (!net_find()) return skip("no virtio-net (run minikvm with --net user)");
    if (!bring_up_user()) return false;
    if (!(net_dev.features & BIT(NET_F_HOST_TSO4))) return skip("the card offers no HOST_TSO4");
    /* 3 x 1000 bytes to port 9 of the host, on no connection: each good
     * segment earns a RST. */
    enum { PAYLOAD = 3000, MSS = 1000 };
    static uint8_t f[TCP_HEADERS + PAYLOAD];
    ethernet(f, host_mac, 0x0800);
    ipv4(f, 6, 20 + PAYLOAD, guest_ip, host_ip);
    uint8_t* tcp = f + 34;
    memset(tcp, 0, 20);
    put16(tcp, 40001);
    put16(tcp + 2, 9);
    put32(tcp + 4, 0x10000000);
    put32(tcp + 8, 0x20000000);
    tcp[12] = 0x50;
    tcp[13] = 0x18; /* ACK, PSH */
    put16(tcp + 14, 65535);
    for (unsigned i = 0; i < PAYLOAD; ++i) f[TCP_HEADERS + i] = peer_pattern(9, i);
    put16(tcp + TCP_CSUM_OFFSET, csum_fold(pseudo(f, 20 + PAYLOAD)));
    const struct net_hdr hdr = {.flags = NET_HDR_F_NEEDS_CSUM,
                                .gso_type = NET_HDR_GSO_TCPV4,
                                .hdr_len = TCP_HEADERS,
                                .gso_size = MSS,
                                .csum_start = 34,
                                .csum_offset = TCP_CSUM_OFFSET};
    CHECK(net_transmit(&hdr, f, sizeof f, NET_LAYOUT_SPLIT), "TSO frame not sent");
    uint8_t* r = rx_frame();
    unsigned resets = 0;
    while (wait_for(r, is_rst, resets ? 500 : REPLY_TIMEOUT_MS) > 0) ++resets;
    CHECK(resets > 0, "no RST for any segment in %u ms: were the segments' checksums right?", REPLY_TIMEOUT_MS);
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
