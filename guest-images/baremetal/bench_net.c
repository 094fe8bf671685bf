/* Network benchmarks, for scripts/bench (not part of test=all): the guest
 * polls its rings, the host-side peer (tests/guest/net-peer) sits on the
 * other end of the namespace's bridge. One line per frame size:
 *
 *   MINIKVM-BAREMETAL INFO bench-net-tx: size=N frames=F seconds=S frames_per_s=R gbit_per_s=G peer_frames=P
 *   MINIKVM-BAREMETAL INFO bench-net-rx: size=N frames=F seconds=S frames_per_s=R gbit_per_s=G sent=P host_frames_per_s=H
 *
 * sizes 64 and 1514 (plain frames), and 65549 (a 64 KiB TCP frame with
 * TSO: HOST_TSO4 for transmit, GUEST_TSO4 for receive). Gbit/s counts the
 * bytes that crossed the ring. The host kernel cuts a GSO frame into MSS
 * segments when it goes from one tap to another (see net-tso-rx), so on
 * the bridge the 64 KiB frames of both directions become 46 segments on
 * the other side: frames are counted as the guest's ring saw them. Transmit keeps the
 * ring full for `bench-seconds` (default 1) and counts what the device took;
 * the peer counts what reached it (it may read slower than the device
 * writes: that is the host's ceiling, not the device's). Receive: the peer
 * writes `bench-net-frames` frames (default 200000; a tenth for 64 KiB) as
 * fast as it can and reports its own rate; the guest counts what arrived
 * between the first and the last frame. The tap drops what the VMM does
 * not fetch in time, so frames may be fewer than sent.
 *
 * bench-net-size=N runs only the size N (64, 1514 or 65549), and each size
 * is framed by "measuring" and "measured" lines: scripts/bench samples the
 * VMM's CPU time there. */
#include "clock.h"
#include "net.h"
#include "net_peer.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

#define TUN_F_CSUM 1 /* the peer's tap offloads (linux/if_tun.h) */
#define TUN_F_TSO4 2
#define TUN_F_TSO6 4
#define RX_BUFFER 4096

static const uint32_t sizes[3] = {64, ETH_MAX_FRAME, TCP_HEADERS + TCP_MAX_PAYLOAD};

/* A positive count from the command line; 0 or garbage: `fallback`. */
static uint64_t cmdline_count(const char* key, uint64_t fallback) {
    const uint64_t n = cmdline_number(key, fallback);
    return n ? n : fallback;
}

static uint64_t parse_field(const char* text, const char* key) {
    const size_t n = strlen(key);
    for (const char* p = text; *p; ++p)
        if (strncmp(p, key, n) == 0 && p[n] == '=') {
            uint64_t v = 0;
            for (p += n + 1; *p >= '0' && *p <= '9'; ++p) v = v * 10 + (uint64_t)(*p - '0');
            return v;
        }
    return 0;
}

/* Figures as "X.YYY" without floating point (the guest has no FPU state
 * to spare: -mgeneral-regs-only). */
static void report(const char* extra, uint32_t size, uint64_t frames, uint64_t bytes, uint64_t ns) {
    const uint64_t rate = ns ? frames * 1000000000ull / ns : 0;
    const uint64_t mbit = ns ? bytes * 8ull * 1000ull / ns : 0; /* bits per ns * 1000 = Mbit/s */
    info("size=%u frames=%llu seconds=%llu.%03llu frames_per_s=%llu gbit_per_s=%llu.%03llu %s", size,
         (unsigned long long)frames, (unsigned long long)(ns / 1000000000ull),
         (unsigned long long)(ns / 1000000ull % 1000), (unsigned long long)rate, (unsigned long long)(mbit / 1000),
         (unsigned long long)(mbit % 1000), extra);
}

static bool start(uint32_t features) {
    if (!net_start(features | BIT(VIRTIO_F_RING_EVENT_IDX) | BIT(NET_F_MRG_RXBUF))) return false;
    if (!net_post_rx(net_dev.rx.size, RX_BUFFER)) return false;
    return peer_hello();
}

static bool bench_tx_size(uint32_t size, uint64_t seconds) {
    uint8_t* frame = alloc_zeroed(size, 64);
    struct net_hdr hdr = {0, 0, 0, 0, 0, 0, 0};
    if (size > ETH_MAX_FRAME) {
        peer_tcp_frame(frame, size - TCP_HEADERS, 7, true);
        hdr = (struct net_hdr){NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_TCPV4, TCP_HEADERS, GSO_MSS, L4_START,
                               TCP_CSUM_OFFSET, 0};
    } else {
        peer_data_frame(frame, size, 1);
    }
    if (!peer_request(0, 0, 3000, "sink")) return false;
    info("measuring");
    /* Keep the ring full: reclaim what the device finished, refill, kick
     * only when the device asks (EVENT_IDX). All chains share one frame:
     * the device only reads it. */
    uint64_t sent = 0;
    const uint64_t start_ns = now_ns(), end_ns = start_ns + seconds * 1000000000ull;
    uint64_t now = start_ns;
    while (now < end_ns) {
        sent += net_tx_reclaim();
        bool added = false;
        while (net_tx_add(&hdr, frame, size, NET_LAYOUT_SPLIT, frame)) added = true;
        if (added) net_tx_kick();
        now = now_ns();
    }
    /* What is still in flight counts once it is done. */
    const uint64_t drain_deadline = now_ns() + 2000000000ull;
    while (net_dev.tx.num_free != net_dev.tx.size && now_ns() < drain_deadline) sent += net_tx_reclaim();
    const uint64_t ns = now_ns() - start_ns;
    info("measured");
    CHECK(net_dev.tx.num_free == net_dev.tx.size, "transmit ring not drained in 2 s");
    delay_us(100000); /* let the peer read what is on its way */
    char reply[96];
    if (!peer_request(reply, sizeof reply, 3000, "count")) return false;
    char extra[48];
    format(extra, sizeof extra, "peer_frames=%llu peer_bytes=%llu", (unsigned long long)parse_field(reply, "frames"),
           (unsigned long long)parse_field(reply, "bytes"));
    report(extra, size, sent, sent * size, ns);
    return true;
}

/* Whether size i runs: all, or the one bench-net-size= names. */
static bool size_wanted(unsigned i) {
    const uint64_t only = cmdline_number("bench-net-size", 0);
    return only == 0 || only == sizes[i];
}

static bool known_size(void) {
    const uint64_t only = cmdline_number("bench-net-size", 0);
    for (unsigned i = 0; i < ARRAY_SIZE(sizes); ++i)
        if (only == 0 || only == sizes[i]) return true;
    return fail("bench-net-size=%llu: not one of 64, 1514, 65549", (unsigned long long)only);
}

static bool bench_net_tx(void) {
    if (!net_find()) return skip("no virtio-net");
    if (!start(BIT(NET_F_CSUM) | BIT(NET_F_HOST_TSO4))) return false;
    CHECK(net_dev.features & BIT(NET_F_HOST_TSO4), "HOST_TSO4 not negotiated");
    if (!peer_request(0, 0, 3000, "offload flags=%u", TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) return false;
    const uint64_t seconds = cmdline_count("bench-seconds", 1);
    if (!known_size()) return false;
    for (unsigned i = 0; i < ARRAY_SIZE(sizes); ++i)
        if (size_wanted(i) && !bench_tx_size(sizes[i], seconds)) return false;
    return true;
}

static bool bench_rx_size(uint32_t size, unsigned count) {
    struct virtq* rx = &net_dev.rx;
    info("measuring");
    const unsigned id = peer_send("blast kind=%s len=%u count=%u", size > ETH_MAX_FRAME ? "tcp" : "data", size, count);
    CHECK(id, "could not send the request");
    uint64_t frames = 0, bytes = 0, first_bytes = 0, first = 0, last = 0;
    char reply[96];
    bool answered = false;
    uint64_t deadline = now_ns() + 5000000000ull;
    while (!answered && now_ns() < deadline) {
        if (!virtq_has_used(rx)) {
            cpu_relax();
            continue;
        }
        uint32_t len = 0;
        uint8_t* buf = virtq_get(rx, &len);
        CHECK(buf, "receiveq: %s", rx->device_error ? rx->device_error : "no buffer");
        const struct net_hdr* hdr = (const struct net_hdr*)buf;
        const uint8_t* frame = buf + net_dev.hdr_len;
        const int frame_len = (int)(len - net_dev.hdr_len);
        if (peer_is_control(frame, frame_len)) {
            answered = peer_is_reply(frame, frame_len, id, reply, sizeof reply);
        } else {
            last = now_ns();
            if (!frames) first = last, first_bytes = (uint64_t)frame_len;
            frames++;
            bytes += (uint64_t)frame_len;
            deadline = last + 2000000000ull; /* the peer is still writing */
        }
        /* The rest of a merged frame: just hand the buffers back. */
        for (unsigned i = 1; i < hdr->num_buffers; ++i) {
            net_repost_rx(buf);
            while (!virtq_has_used(rx)) cpu_relax();
            buf = virtq_get(rx, &len);
            CHECK(buf, "receiveq: %s", rx->device_error ? rx->device_error : "no buffer");
            bytes += len;
            if (frames == 1) first_bytes += len;
        }
        net_repost_rx(buf);
        net_rx_kick();
    }
    info("measured");
    CHECK(frames > 1, "%llu frames arrived", (unsigned long long)frames);
    char extra[64] = "sent=? host_frames_per_s=?";
    if (answered) {
        const uint64_t sent = parse_field(reply, "sent"), ns = parse_field(reply, "ns");
        format(extra, sizeof extra, "sent=%llu host_frames_per_s=%llu", (unsigned long long)sent,
               (unsigned long long)(ns ? sent * 1000000000ull / ns : 0));
    }
    /* The rate between the first frame and the last: what came after the first. */
    report(extra, size, frames - 1, bytes - first_bytes, last - first);
    return true;
}

static bool bench_net_rx(void) {
    if (!net_find()) return skip("no virtio-net");
    if (!start(BIT(NET_F_GUEST_CSUM) | BIT(NET_F_GUEST_TSO4))) return false;
    CHECK(net_dev.features & BIT(NET_F_GUEST_TSO4), "GUEST_TSO4 not negotiated");
    const unsigned count = (unsigned)cmdline_count("bench-net-frames", 200000);
    if (!known_size()) return false;
    for (unsigned i = 0; i < ARRAY_SIZE(sizes); ++i)
        if (size_wanted(i) && !bench_rx_size(sizes[i], sizes[i] > ETH_MAX_FRAME ? count / 10 : count)) return false;
    return true;
}

const struct test net_bench_tests[] = {
    {"bench-net-tx", bench_net_tx, "benchmark: guest-to-tap frames/s and Gbit/s (64, 1514, 64 KiB TSO)"},
    {"bench-net-rx", bench_net_rx, "benchmark: tap-to-guest frames/s and Gbit/s (64, 1514, 64 KiB TSO)"},
};
const unsigned net_bench_test_count = ARRAY_SIZE(net_bench_tests);
