/* See net_user.h. */
#include "net_user.h"

#include "clock.h"
#include "net.h"
#include "net_peer.h"
#include "runtime.h"

const uint8_t net_user_guest_ip[4] = {10, 0, 2, 15}, net_user_host_ip[4] = {10, 0, 2, 2};
const uint8_t net_user_broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
uint8_t net_user_host_mac[6];

void net_user_put16(uint8_t* p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; }
void net_user_put32(uint8_t* p, uint32_t v) { net_user_put16(p, (uint16_t)(v >> 16)), net_user_put16(p + 2, (uint16_t)v); }
uint16_t net_user_get16(const uint8_t* p) { return (uint16_t)(p[0] << 8 | p[1]); }
uint32_t net_user_get32(const uint8_t* p) { return (uint32_t)net_user_get16(p) << 16 | net_user_get16(p + 2); }

void net_user_ethernet(uint8_t* f, const uint8_t* to, uint16_t type) {
    memcpy(f, to, 6);
    memcpy(f + 6, net_dev.mac, 6);
    net_user_put16(f + 12, type);
}

void net_user_ipv4(uint8_t* f, uint8_t protocol, uint32_t l4_len, const uint8_t* from, const uint8_t* to) {
    uint8_t* ip = f + 14;
    memset(ip, 0, 20);
    ip[0] = 0x45;
    net_user_put16(ip + 2, (uint16_t)(20 + l4_len));
    net_user_put16(ip + 4, 0x4d4b);
    ip[8] = 64;
    ip[9] = protocol;
    memcpy(ip + 12, from, 4);
    memcpy(ip + 16, to, 4);
    net_user_put16(ip + 10, (uint16_t)~csum_fold(csum_add(0, ip, 20)));
}

uint32_t net_user_pseudo(const uint8_t* f, uint32_t l4_len) {
    const uint8_t* ip = f + 14;
    return csum_add(0, ip + 12, 8) + ip[9] + l4_len;
}

bool net_user_send(const uint8_t* frame, uint32_t len) {
    const struct net_hdr hdr = {0};
    return net_transmit(&hdr, frame, len, NET_LAYOUT_SPLIT);
}

static uint64_t now_ms(void) { return now_ns() / 1000000u; }

int net_user_wait_for(uint8_t* frame, bool (*match)(const uint8_t*, int), uint64_t timeout_ms) {
    const uint64_t end = now_ms() + timeout_ms;
    for (uint64_t now = now_ms(); now < end; now = now_ms()) {
        struct net_hdr hdr;
        const int len = net_receive(&hdr, frame, NET_MAX_GSO_FRAME, end - now, true);
        if (len == -2) return -1;
        if (len > 0 && match(frame, len)) return len;
    }
    return -1;
}

uint8_t* net_user_rx_frame(void) {
    static uint8_t* buf;
    if (!buf) buf = alloc_zeroed(NET_MAX_GSO_FRAME, 64);
    return buf;
}

static bool is_arp_reply(const uint8_t* f, int len) {
    return len >= 42 && net_user_get16(f + 12) == 0x0806 && net_user_get16(f + 20) == 2 &&
           memcmp(f + 28, net_user_host_ip, 4) == 0;
}

bool net_user_bring_up(void) {
    if (!net_start(BIT(NET_F_MAC) | BIT(NET_F_CSUM) | BIT(NET_F_HOST_TSO4) | BIT(NET_F_STATUS))) return false;
    if (!net_post_rx(net_dev.rx.size / 2, 12 + ETH_MAX_FRAME)) return false;
    static uint8_t arp[60];
    memset(arp, 0, sizeof arp);
    net_user_ethernet(arp, net_user_broadcast, 0x0806);
    net_user_put16(arp + 14, 1);
    net_user_put16(arp + 16, 0x0800);
    arp[18] = 6;
    arp[19] = 4;
    net_user_put16(arp + 20, 1);
    memcpy(arp + 22, net_dev.mac, 6);
    memcpy(arp + 28, net_user_guest_ip, 4);
    memcpy(arp + 38, net_user_host_ip, 4);
    CHECK(net_user_send(arp, sizeof arp), "ARP request not sent");
    uint8_t* f = net_user_rx_frame();
    CHECK(net_user_wait_for(f, is_arp_reply, NET_USER_REPLY_TIMEOUT_MS) > 0,
          "no ARP reply for 10.0.2.2 in %u ms (is minikvm running with --net user?)", NET_USER_REPLY_TIMEOUT_MS);
    CHECK(memcmp(f, net_dev.mac, 6) == 0, "the ARP reply is not addressed to our MAC");
    memcpy(net_user_host_mac, f + 22, 6);
    return true;
}

uint32_t net_user_echo_request(uint8_t* f, uint16_t seq) {
    net_user_ethernet(f, net_user_host_mac, 0x0800);
    net_user_ipv4(f, 1, 8 + 56, net_user_guest_ip, net_user_host_ip);
    uint8_t* icmp = f + 34;
    memset(icmp, 0, 8);
    icmp[0] = 8;
    net_user_put16(icmp + 4, 0x6b76);
    net_user_put16(icmp + 6, seq);
    for (unsigned i = 0; i < 56; ++i) icmp[8 + i] = peer_pattern(5, i);
    net_user_put16(icmp + 2, (uint16_t)~csum_fold(csum_add(0, icmp, 8 + 56)));
    return 34 + 8 + 56;
}

bool net_user_is_echo_reply(const uint8_t* f, int len) {
    return len >= 42 && net_user_get16(f + 12) == 0x0800 && f[23] == 1 && f[34] == 0 &&
           net_user_get16(f + 38) == 0x6b76;
}
