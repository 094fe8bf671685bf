/* A TCP connection to the user network's host, for the benchmarks: see
 * net_user_tcp.h for what it does and does not do. */
#include "net_user_tcp.h"

#include "clock.h"
#include "net.h"
#include "net_peer.h"
#include "net_user.h"
#include "runtime.h"
#include "x86.h"

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

#define OUR_MSS 1460          /* a 1500-byte MTU */
#define RECEIVE_WINDOW 65535  /* no window scaling */
#define SLOTS 64              /* transmit chains in flight at most */
#define RESEND_AFTER_MS 200   /* no ACK progress for this long: go back */
#define IDLE_LIMIT_MS 10000   /* no progress at all for this long: give up */
#define ACK_EVERY 2           /* in-order segments per ACK, as Linux does */
#define PATTERN_PERIOD 256    /* tcp_stream_byte() repeats after this many */

typedef uint64_t __attribute__((may_alias, aligned(1))) unaligned_u64;
typedef uint32_t __attribute__((may_alias, aligned(1))) unaligned_u32;
typedef uint16_t __attribute__((may_alias, aligned(1))) unaligned_u16;

static int32_t seq_diff(uint32_t a, uint32_t b) { return (int32_t)(a - b); }
static uint64_t now_ms(void) { return now_ns() / 1000000u; }

/* The stream from offset 0 for a period plus the largest payload: the bytes
 * at stream offset o are pattern + o % PATTERN_PERIOD. */
static uint8_t* pattern;
static const uint8_t* stream_at(uint64_t offset) {
    if (!pattern) {
        pattern = alloc_zeroed(PATTERN_PERIOD + 65536, 64);
        for (uint32_t i = 0; i < PATTERN_PERIOD + 65536; ++i) pattern[i] = tcp_stream_byte(i);
    }
    return pattern + offset % PATTERN_PERIOD;
}

/* memcpy and memcmp a word at a time: the runtime's go byte by byte, which
 * would make the guest, not the VMM, what a 64 KiB frame waits for. */
static void copy_fast(uint8_t* d, const uint8_t* s, uint32_t n) {
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8) *(unaligned_u64*)(d + i) = *(const unaligned_u64*)(s + i);
    for (; i < n; ++i) d[i] = s[i];
}
static bool same_fast(const uint8_t* a, const uint8_t* b, uint32_t n) {
    uint32_t i = 0;
    for (; i + 8 <= n; i += 8)
        if (*(const unaligned_u64*)(a + i) != *(const unaligned_u64*)(b + i)) return false;
    for (; i < n; ++i)
        if (a[i] != b[i]) return false;
    return true;
}

/* The Internet checksum's sum of n bytes in network order, 4 bytes at a
 * time: summed in the machine's order, folded, then byte-swapped (RFC 1071:
 * the sum does not depend on the byte order). */
static uint32_t sum_fast(const uint8_t* p, uint32_t n) {
    uint64_t s = 0;
    uint32_t i = 0;
    for (; i + 4 <= n; i += 4) s += *(const unaligned_u32*)(p + i);
    if (i + 2 <= n) s += *(const unaligned_u16*)(p + i), i += 2;
    if (i < n) s += p[i];
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint32_t)(((s & 0xff) << 8) | (s >> 8));
}

/* --- Frames to the host. */

/* A pool of transmit frames: a frame stays untouched until the device used
 * its chain, which hands the frame back as the chain's token. */
struct slots {
    uint8_t* free[SLOTS];
    unsigned free_count;
    uint32_t size;
};
static struct slots tx_slots;

static void slots_init(uint32_t size) {
    if (tx_slots.size < size) {
        for (unsigned i = 0; i < SLOTS; ++i) tx_slots.free[i] = alloc_zeroed(size, 64);
        tx_slots.size = size;
    }
    tx_slots.free_count = SLOTS;
}
static void slots_reclaim(void) {
    uint32_t len;
    void* token;
    while ((token = virtq_get(&net_dev.tx, &len)) != 0) tx_slots.free[tx_slots.free_count++] = token;
}
/* Waits until the device used every chain (false after 2 s). */
static bool slots_drain(void) {
    const uint64_t end = now_ms() + 2000;
    for (slots_reclaim(); tx_slots.free_count < SLOTS; slots_reclaim())
        if (now_ms() > end) return false;
    return true;
}

/* Ethernet, IPv4 and TCP headers (with `options` option bytes) of a segment
 * to the host carrying `payload` bytes; returns the headers' length. */
static uint32_t put_headers(uint8_t* f, const struct tcp_conn* c, uint8_t flags, uint32_t seq, uint32_t payload,
                            uint32_t options) {
    net_user_ethernet(f, net_user_host_mac, 0x0800);
    net_user_ipv4(f, 6, 20 + options + payload, net_user_guest_ip, net_user_host_ip);
    uint8_t* t = f + L4_START;
    net_user_put16(t, c->local_port);
    net_user_put16(t + 2, c->remote_port);
    net_user_put32(t + 4, seq);
    net_user_put32(t + 8, (flags & TCP_ACK) ? c->rcv_nxt : 0);
    t[12] = (uint8_t)(((20 + options) / 4) << 4);
    t[13] = flags;
    net_user_put16(t + 14, RECEIVE_WINDOW);
    net_user_put16(t + TCP_CSUM_OFFSET, 0);
    net_user_put16(t + 18, 0);
    return L4_START + 20 + options;
}

/* Queues a frame built by put_headers (checksum and offload header filled
 * in here); `slot` comes back from slots_reclaim once used. */
static bool queue_frame(const struct tcp_conn* c, uint8_t* f, uint32_t len, uint32_t payload, void* slot) {
    uint8_t* t = f + L4_START;
    const uint32_t l4 = len - L4_START;
    struct net_hdr h = {0};
    if (c->csum) {
        /* The device finishes it from the pseudo-header's sum (5.1.6.2). */
        net_user_put16(t + TCP_CSUM_OFFSET, csum_fold(net_user_pseudo(f, l4)));
        h.flags = NET_HDR_F_NEEDS_CSUM;
        h.csum_start = L4_START;
        h.csum_offset = TCP_CSUM_OFFSET;
        if (c->tso && payload > c->mss) {
            h.gso_type = NET_HDR_GSO_TCPV4;
            h.hdr_len = (uint16_t)(len - payload);
            h.gso_size = (uint16_t)c->mss;
        }
    } else {
        net_user_put16(t + TCP_CSUM_OFFSET, (uint16_t)~csum_fold(net_user_pseudo(f, l4) + sum_fast(t, l4)));
    }
    return net_tx_add(&h, f, len, NET_LAYOUT_SPLIT, slot);
}

/* A segment without payload (SYN, ACK, FIN), from the pool; false when the
 * pool or the ring is full (the caller tries again later). */
static bool send_control(struct tcp_conn* c, uint8_t flags, uint32_t seq, bool mss_option) {
    slots_reclaim();
    if (tx_slots.free_count == 0) return false;
    uint8_t* f = tx_slots.free[tx_slots.free_count - 1];
    uint32_t len = put_headers(f, c, flags, seq, 0, mss_option ? 4 : 0);
    if (mss_option) {
        uint8_t* o = f + L4_START + 20;
        o[0] = 2, o[1] = 4;
        net_user_put16(o + 2, OUR_MSS);
    }
    if (!queue_frame(c, f, len, 0, f)) return false;
    --tx_slots.free_count;
    net_tx_kick();
    return true;
}
static void send_ack(struct tcp_conn* c) {
    const uint64_t end = now_ms() + 2000;
    while (!send_control(c, TCP_ACK, c->snd_nxt, false) && now_ms() < end) cpu_relax();
}

/* --- Segments from the host. */

struct segment {
    uint8_t flags;
    uint32_t seq, ack, window;
    const uint8_t* options;
    uint32_t options_len;
    const uint8_t* payload;
    uint32_t payload_len;
};

/* Whether the frame is a segment of this connection; fills *s. */
static bool parse(const struct tcp_conn* c, const uint8_t* f, int len, struct segment* s) {
    if (len < L4_START + 20 || net_user_get16(f + 12) != 0x0800) return false;
    const uint8_t* ip = f + 14;
    const uint32_t ihl = (uint32_t)(ip[0] & 0xf) * 4, total = net_user_get16(ip + 2);
    if (ip[9] != 6 || ihl < 20 || total > (uint32_t)len - 14 || total < ihl + 20) return false;
    const uint8_t* t = ip + ihl;
    if (net_user_get16(t) != c->remote_port || net_user_get16(t + 2) != c->local_port) return false;
    const uint32_t doff = (uint32_t)(t[12] >> 4) * 4;
    if (doff < 20 || ihl + doff > total) return false;
    s->flags = t[13];
    s->seq = net_user_get32(t + 4);
    s->ack = net_user_get32(t + 8);
    s->window = net_user_get16(t + 14);
    s->options = t + 20;
    s->options_len = doff - 20;
    s->payload = t + doff;
    s->payload_len = total - ihl - doff;
    return true;
}

/* What a segment did to the connection. */
enum taken { TAKEN_NOTHING, TAKEN_IN_ORDER, TAKEN_OUT_OF_ORDER, TAKEN_FIN, TAKEN_RESET, TAKEN_BAD_DATA };

static enum taken take(struct tcp_conn* c, const struct segment* s, uint32_t snd_max) {
    if (s->flags & TCP_RST) return TAKEN_RESET;
    if (s->flags & TCP_ACK) {
        /* An ACK of something sent (after going back, snd_nxt may be behind
         * what the peer already has). */
        if (seq_diff(s->ack, c->snd_una) > 0 && seq_diff(s->ack, snd_max) <= 0) {
            c->snd_una = s->ack;
            if (seq_diff(c->snd_nxt, c->snd_una) < 0) c->snd_nxt = c->snd_una;
        }
        c->peer_window = s->window;
    }
    enum taken result = TAKEN_NOTHING;
    if (s->payload_len > 0) {
        if (s->seq != c->rcv_nxt) {
            ++c->dup_acks_sent;
            return TAKEN_OUT_OF_ORDER;
        }
        if (!same_fast(s->payload, stream_at(c->received), s->payload_len)) return TAKEN_BAD_DATA;
        c->rcv_nxt += s->payload_len;
        c->received += s->payload_len;
        result = TAKEN_IN_ORDER;
    }
    if ((s->flags & TCP_FIN) && s->seq + s->payload_len == c->rcv_nxt && !c->fin_received) {
        c->rcv_nxt += 1;
        c->fin_received = true;
        result = TAKEN_FIN;
    }
    return result;
}

/* The next frame of this connection, if one is in the receive ring now. */
static bool next_segment(const struct tcp_conn* c, struct segment* s, bool* device_failed) {
    uint8_t* f = net_user_rx_frame();
    for (;;) {
        struct net_hdr hdr;
        const int len = net_receive(&hdr, f, NET_MAX_GSO_FRAME, 0, true);
        if (len == -2) *device_failed = true;
        if (len < 0) return false;
        if (parse(c, f, len, s)) return true;
    }
}

#define TAKE_OR_FAIL(c, s, snd_max)                                                                        \
    ({                                                                                                     \
        const enum taken taken_ = take((c), (s), (snd_max));                                               \
        if (taken_ == TAKEN_RESET) return fail("the host reset the connection (port %u)", (c)->remote_port); \
        if (taken_ == TAKEN_BAD_DATA)                                                                      \
            return fail("stream byte %llu on: not what the host was to send", (unsigned long long)(c)->received); \
        taken_;                                                                                            \
    })

/* --- The connection. */

bool tcp_connect(struct tcp_conn* c, uint16_t port, uint64_t timeout_ms) {
    static uint16_t next_local_port = 49152;
    memset(c, 0, sizeof *c);
    if (!net_user_bring_up()) return false;
    /* net-user-tcp-offloads=0: every segment MSS-sized with its own
     * checksum even where the card would take them, as on a card without. */
    const bool offloads = cmdline_number("net-user-tcp-offloads", 1) != 0;
    c->csum = offloads && (net_dev.features & BIT(NET_F_CSUM));
    c->tso = c->csum && (net_dev.features & BIT(NET_F_HOST_TSO4));
    c->local_port = next_local_port++;
    c->remote_port = port;
    c->iss = (uint32_t)rdtsc();
    c->snd_una = c->snd_nxt = c->iss + 1;
    c->mss = 536; /* RFC 879's default, if the host names none */
    slots_init(L4_START + 20 + TCP_MAX_PAYLOAD);
    const uint64_t end = now_ms() + timeout_ms;
    uint64_t resend = 0;
    bool device_failed = false;
    struct segment s;
    for (;;) {
        const uint64_t now = now_ms();
        CHECK(now < end, "no answer from 10.0.2.2:%u to a SYN in %llu ms", port, (unsigned long long)timeout_ms);
        if (now >= resend) {
            CHECK(send_control(c, TCP_SYN, c->iss, true), "SYN not queued");
            resend = now + 1000;
        }
        if (!next_segment(c, &s, &device_failed)) {
            if (device_failed) return false;
            continue;
        }
        CHECK(!(s.flags & TCP_RST), "10.0.2.2:%u refused the connection (nothing listens there?)", port);
        if ((s.flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK) && s.ack == c->iss + 1) break;
    }
    for (uint32_t i = 0; i + 1 < s.options_len;) {
        const uint8_t kind = s.options[i];
        if (kind == 0) break;
        if (kind == 1) {
            ++i;
            continue;
        }
        const uint8_t len = s.options[i + 1];
        if (len < 2 || i + len > s.options_len) break;
        if (kind == 2 && len == 4) c->mss = net_user_get16(s.options + i + 2);
        i += len;
    }
    if (c->mss > OUR_MSS) c->mss = OUR_MSS;
    CHECK(c->mss >= 64, "the host's MSS is %u bytes", c->mss);
    c->rcv_nxt = s.seq + 1;
    c->peer_window = s.window;
    send_ack(c);
    return true;
}

bool tcp_send_stream(struct tcp_conn* c, uint64_t bytes, uint64_t* first, uint64_t* last) {
    CHECK(bytes > 0 && bytes < (1ull << 30), "%llu bytes: 1 to 1 GiB", (unsigned long long)bytes);
    /* Per frame: a whole number of segments for the device to cut, or one. */
    const uint32_t per_frame = c->tso ? TCP_MAX_PAYLOAD / c->mss * c->mss : c->mss;
    const uint32_t base = c->iss + 1; /* stream offset 0 */
    const uint32_t end = c->snd_nxt + (uint32_t)bytes;
    uint32_t snd_max = c->snd_nxt;
    uint64_t last_progress = now_ms(), resend_at = last_progress + RESEND_AFTER_MS;
    uint32_t una_seen = c->snd_una;
    bool device_failed = false;
    *first = rdtsc();
    while (seq_diff(c->snd_una, end) < 0) {
        slots_reclaim();
        bool queued = false;
        while (seq_diff(c->snd_nxt, end) < 0 && tx_slots.free_count > 0) {
            const int32_t room = seq_diff(c->snd_una + c->peer_window, c->snd_nxt);
            const uint32_t left = (uint32_t)seq_diff(end, c->snd_nxt);
            uint32_t n = left < per_frame ? left : per_frame;
            if (room < (int32_t)n) {
                /* Less than a frame's worth of window: whole segments, or
                 * (nothing in flight) whatever fits, or wait for more. */
                const uint32_t whole = room > 0 ? (uint32_t)room / c->mss * c->mss : 0;
                if (whole > 0)
                    n = whole;
                else if (room > 0 && c->snd_nxt == c->snd_una)
                    n = (uint32_t)room;
                else
                    break;
            }
            uint8_t* f = tx_slots.free[tx_slots.free_count - 1];
            const uint32_t headers = put_headers(f, c, TCP_ACK | TCP_PSH, c->snd_nxt, n, 0);
            copy_fast(f + headers, stream_at(c->snd_nxt - base), n);
            if (!queue_frame(c, f, headers + n, n, f)) break; /* the ring is full */
            --tx_slots.free_count;
            c->snd_nxt += n;
            if (seq_diff(c->snd_nxt, snd_max) > 0) snd_max = c->snd_nxt;
            queued = true;
        }
        if (queued) net_tx_kick();
        struct segment s;
        while (next_segment(c, &s, &device_failed)) (void)TAKE_OR_FAIL(c, &s, snd_max);
        if (device_failed) return false;
        const uint64_t now = now_ms();
        if (c->snd_una != una_seen) {
            una_seen = c->snd_una;
            last_progress = now;
            resend_at = now + RESEND_AFTER_MS;
        } else if (now - last_progress > IDLE_LIMIT_MS) {
            return fail("no ACK progress in %u ms at stream byte %u of %llu (window %u)", IDLE_LIMIT_MS,
                        c->snd_una - base, (unsigned long long)bytes, c->peer_window);
        } else if (now >= resend_at) {
            if (c->snd_nxt != c->snd_una) {
                /* Lost on the way (or its ACK was): from the oldest byte again. */
                c->snd_nxt = c->snd_una;
                ++c->retransmits;
            } else if (c->peer_window == 0) {
                c->peer_window = 1; /* a one-byte probe of the closed window */
            }
            resend_at = now + RESEND_AFTER_MS;
        }
    }
    *last = rdtsc();
    CHECK(slots_drain(), "the device did not use every transmit chain in 2 s");
    return true;
}

bool tcp_receive_stream(struct tcp_conn* c, uint64_t* first, uint64_t* last) {
    unsigned unacked = 0;
    uint64_t idle_since = now_ms();
    bool device_failed = false, started = false;
    while (!c->fin_received) {
        struct segment s;
        if (!next_segment(c, &s, &device_failed)) {
            if (device_failed) return false;
            if (unacked > 0) { /* the ring is dry: acknowledge what came */
                send_ack(c);
                unacked = 0;
            }
            CHECK(now_ms() - idle_since < IDLE_LIMIT_MS, "nothing from the host in %u ms, %llu bytes in",
                  IDLE_LIMIT_MS, (unsigned long long)c->received);
            cpu_relax();
            continue;
        }
        switch (TAKE_OR_FAIL(c, &s, c->snd_nxt)) {
            case TAKEN_IN_ORDER:
                *last = rdtsc();
                if (!started) *first = *last, started = true;
                idle_since = now_ms();
                if (++unacked >= ACK_EVERY) {
                    send_ack(c);
                    unacked = 0;
                }
                break;
            case TAKEN_FIN:
                if (s.payload_len > 0) { /* the last data came with the FIN */
                    *last = rdtsc();
                    if (!started) *first = *last, started = true;
                }
                if (!started) *first = *last = rdtsc();
                send_ack(c);
                unacked = 0;
                break;
            case TAKEN_OUT_OF_ORDER: /* a duplicate ACK: the host resends the gap */
                send_ack(c);
                unacked = 0;
                break;
            default: break;
        }
    }
    return true;
}

bool tcp_close(struct tcp_conn* c, uint64_t timeout_ms) {
    const uint32_t fin_seq = c->snd_nxt;
    const uint64_t end = now_ms() + timeout_ms;
    uint64_t resend = 0;
    bool device_failed = false;
    c->snd_nxt = fin_seq + 1;
    while (seq_diff(c->snd_una, fin_seq + 1) < 0 || !c->fin_received) {
        const uint64_t now = now_ms();
        CHECK(now < end, "the connection to port %u did not close in %llu ms (%s)", c->remote_port,
              (unsigned long long)timeout_ms, c->fin_received ? "our FIN not acknowledged" : "no FIN from the host");
        if (now >= resend && seq_diff(c->snd_una, fin_seq + 1) < 0) {
            if (send_control(c, TCP_FIN | TCP_ACK, fin_seq, false)) resend = now + 500;
        }
        struct segment s;
        while (next_segment(c, &s, &device_failed)) {
            const enum taken t = TAKE_OR_FAIL(c, &s, fin_seq + 1);
            if (t == TAKEN_FIN || t == TAKEN_OUT_OF_ORDER || t == TAKEN_IN_ORDER) send_ack(c);
        }
        if (device_failed) return false;
    }
    return slots_drain() || fail("the device did not use every transmit chain in 2 s");
}
