/* The guest's half of the network test peer protocol; see net_peer.h. */
#include "net_peer.h"

#include "clock.h"
#include "net.h"
#include "runtime.h"

const uint8_t peer_mac[6] = {0x02, 0x4d, 0x4b, 0x00, 0x00, 0x01};
static const uint8_t guest_ip[4] = {10, 199, 0, 2}, peer_ip[4] = {10, 199, 0, 1};
#define GUEST_PORT 40000
#define PEER_PORT 5001

static void put16(uint8_t* p, uint16_t v) { p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v; } /* network order */
static void put32(uint8_t* p, uint32_t v) { put16(p, (uint16_t)(v >> 16)), put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t* p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void ethernet(uint8_t* frame, uint16_t type) {
    memcpy(frame, peer_mac, 6);
    memcpy(frame + 6, net_dev.mac, 6);
    put16(frame + 12, type);
}

uint32_t peer_data_frame(uint8_t* frame, uint32_t len, uint32_t seq) {
    ethernet(frame, PEER_ETHERTYPE_DATA);
    for (unsigned i = 0; i < 4; ++i) frame[14 + i] = (uint8_t)(seq >> (8 * i));
    for (uint32_t i = 18; i < len; ++i) frame[i] = peer_pattern(seq, i - 18);
    return len;
}

uint32_t csum_add(uint32_t sum, const uint8_t* data, uint32_t len) {
    uint64_t s = sum;
    for (uint32_t i = 0; i + 1 < len; i += 2) s += (uint32_t)(data[i] << 8 | data[i + 1]);
    if (len & 1) s += (uint32_t)data[len - 1] << 8;
    while (s >> 32) s = (s & 0xffffffffu) + (s >> 32);
    return (uint32_t)s;
}

uint16_t csum_fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

/* The pseudo-header's sum (RFC 793/768): addresses, protocol, L4 length. */
static uint32_t pseudo_sum(const uint8_t* ip, uint8_t protocol, uint32_t l4_len) {
    uint32_t sum = csum_add(0, ip + 12, 8);
    return sum + protocol + l4_len;
}

static void ipv4(uint8_t* ip, uint8_t protocol, uint32_t l4_len, uint16_t id) {
    ip[0] = 0x45; /* version 4, 20-byte header */
    ip[1] = 0;
    put16(ip + 2, (uint16_t)(20 + l4_len));
    put16(ip + 4, id);
    put16(ip + 6, 0x4000); /* don't fragment */
    ip[8] = 64;
    ip[9] = protocol;
    put16(ip + 10, 0);
    memcpy(ip + 12, guest_ip, 4);
    memcpy(ip + 16, peer_ip, 4);
    put16(ip + 10, (uint16_t)~csum_fold(csum_add(0, ip, 20)));
}

/* Finishes an L4 header: the checksum field gets either the folded
 * pseudo-header sum (what a driver leaves for NEEDS_CSUM) or the full
 * checksum. */
static void l4_checksum(uint8_t* frame, uint8_t protocol, uint32_t l4_len, unsigned csum_offset, bool partial) {
    uint8_t* l4 = frame + L4_START;
    const uint32_t pseudo = pseudo_sum(frame + 14, protocol, l4_len);
    put16(l4 + csum_offset, 0);
    if (partial) {
        put16(l4 + csum_offset, csum_fold(pseudo));
    } else {
        uint16_t c = (uint16_t)~csum_fold(csum_add(pseudo, l4, l4_len));
        if (protocol == 17 && c == 0) c = 0xffff; /* UDP: 0 means "no checksum" */
        put16(l4 + csum_offset, c);
    }
}

uint32_t peer_tcp_frame(uint8_t* frame, uint32_t payload, uint32_t seed, bool partial) {
    ethernet(frame, 0x0800);
    ipv4(frame + 14, 6, 20 + payload, (uint16_t)seed);
    uint8_t* tcp = frame + L4_START;
    put16(tcp, GUEST_PORT);
    put16(tcp + 2, PEER_PORT);
    put32(tcp + 4, seed * 0x10000u); /* sequence number */
    put32(tcp + 8, 0);
    tcp[12] = 5 << 4;                /* 20-byte header */
    tcp[13] = 0x18;                  /* PSH, ACK */
    put16(tcp + 14, 65535);
    put16(tcp + 18, 0);
    for (uint32_t i = 0; i < payload; ++i) frame[TCP_HEADERS + i] = peer_pattern(seed, i);
    l4_checksum(frame, 6, 20 + payload, TCP_CSUM_OFFSET, partial);
    return TCP_HEADERS + payload;
}

uint32_t peer_udp_frame(uint8_t* frame, uint32_t payload, uint32_t seed, bool partial) {
    ethernet(frame, 0x0800);
    ipv4(frame + 14, 17, 8 + payload, (uint16_t)seed);
    uint8_t* udp = frame + L4_START;
    put16(udp, GUEST_PORT);
    put16(udp + 2, PEER_PORT);
    put16(udp + 4, (uint16_t)(8 + payload));
    for (uint32_t i = 0; i < payload; ++i) frame[UDP_HEADERS + i] = peer_pattern(seed, i);
    l4_checksum(frame, 17, 8 + payload, UDP_CSUM_OFFSET, partial);
    return UDP_HEADERS + payload;
}

bool peer_l4_checksum_ok(const uint8_t* frame, uint32_t len) {
    if (len < L4_START || get16(frame + 12) != 0x0800 || frame[14] != 0x45) return false;
    const uint8_t* ip = frame + 14;
    const uint32_t total = get16(ip + 2);
    if (total < 20 || 14 + total > len) return false;
    if (csum_fold(csum_add(0, ip, 20)) != 0xffff) return false;
    const uint32_t l4_len = total - 20;
    return csum_fold(csum_add(pseudo_sum(ip, ip[9], l4_len), frame + L4_START, l4_len)) == 0xffff;
}

static unsigned next_id = 1;

unsigned peer_send(const char* fmt, ...) {
    static uint8_t frame[ETH_MAX_FRAME];
    const unsigned id = next_id++;
    ethernet(frame, PEER_ETHERTYPE_CONTROL);
    memcpy(frame + 14, PEER_MAGIC, 4);
    char* text = (char*)frame + 18;
    const size_t room = sizeof frame - 18;
    int n = format(text, room, "id=%u ", id);
    va_list args;
    va_start(args, fmt);
    n += vformat(text + n, room - (size_t)n, fmt, args);
    va_end(args);
    uint32_t len = 18 + (uint32_t)n;
    if (len < 60) {
        memset(frame + len, 0, 60 - len); /* the shortest Ethernet frame; the peer stops at the NUL */
        len = 60;
    }
    static const struct net_hdr none;
    if (!net_transmit(&none, frame, len, NET_LAYOUT_SPLIT)) return 0;
    return id;
}

bool peer_is_control(const uint8_t* frame, int len) {
    return len >= 18 && get16(frame + 12) == PEER_ETHERTYPE_CONTROL && memcmp(frame + 14, PEER_MAGIC, 4) == 0;
}

bool peer_is_reply(const uint8_t* frame, int len, unsigned id, char* reply, size_t size) {
    if (!peer_is_control(frame, len)) return false;
    char prefix[24];
    const int n = format(prefix, sizeof prefix, "id=%u ", id);
    const char* text = (const char*)frame + 18;
    const size_t text_len = (size_t)len - 18;
    if (text_len < (size_t)n || memcmp(text, prefix, (size_t)n) != 0) return false;
    size_t i = 0;
    for (; i + 1 < size && (size_t)n + i < text_len && text[n + i]; ++i) reply[i] = text[n + i];
    reply[i] = '\0';
    return true;
}

static bool wait_reply(unsigned id, char* reply, size_t size, uint64_t timeout_ms) {
    static uint8_t frame[NET_MAX_GSO_FRAME];
    struct net_hdr hdr;
    const uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
    for (;;) {
        const uint64_t now = now_ns();
        if (now >= deadline) return false;
        const int len = net_receive(&hdr, frame, sizeof frame, (deadline - now) / 1000000 + 1, true);
        if (len == -2) return false;
        if (len < 0) return false;
        if (peer_is_reply(frame, len, id, reply, size)) return true;
    }
}

bool peer_request(char* reply, size_t size, uint64_t timeout_ms, const char* fmt, ...) {
    char request[256];
    va_list args;
    va_start(args, fmt);
    vformat(request, sizeof request, fmt, args);
    va_end(args);
    const unsigned id = peer_send("%s", request);
    if (!id) return false;
    char local[256];
    if (!reply) reply = local, size = sizeof local;
    if (!wait_reply(id, reply, size, timeout_ms)) return fail("peer: no answer to \"%s\" in %llu ms", request,
                                                               (unsigned long long)timeout_ms);
    if (strncmp(reply, "ok", 2) != 0) return fail("peer: \"%s\": %s", request, reply);
    return true;
}

bool peer_hello(void) {
    char reply[64];
    for (int attempt = 0; attempt < 25; ++attempt) {
        const unsigned id = peer_send("hello");
        if (!id) return false;
        if (wait_reply(id, reply, sizeof reply, 200)) return true;
    }
    return fail("no answer from the network peer in 5 s (is tests/guest/net-peer running on the tap's bridge?)");
}
