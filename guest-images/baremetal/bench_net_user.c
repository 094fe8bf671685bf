/* Benchmarks of a user-mode network (minikvm --net user, QEMU -netdev
 * user), from the bare-metal guest:
 *
 *   bench-net-user-ping     ICMP echo to 10.0.2.2, one at a time
 *                           (net-user-pings=, default 2000): the round
 *                           trip through the device and the stack
 *     INFO bench-net-user-ping: ops=N ms=T ops_per_s=R mean_us=A p50_us=B p99_us=C
 *   bench-net-user-udp-tx   net-user-datagrams= UDP datagrams of 1472 bytes
 *                           to 10.0.2.2:net-user-udp-port (the host's
 *                           loopback, where scripts/bench counts what
 *                           arrives), the ring kept full: the guest's side
 *                           of the rate; the host's side is the bench's
 *     INFO bench-net-user-udp-tx: datagrams=N bytes=B ms=T mbit_per_s=M
 *   bench-net-user-udp-rx   UDP datagrams of 1472 bytes from the host,
 *                           through a hostfwd=udp rule to guest port
 *                           net-user-udp-rx-port: counted until
 *                           net-user-datagrams= arrived or none came for
 *                           half a second (the rest were dropped on the
 *                           way); the rate from the first to the last.
 *                           The host starts sending when it sees
 *                           "measuring" (scripts/bench); the first
 *                           datagram is waited for up to
 *                           net-user-udp-rx-wait-ms= (default 10000)
 *     INFO bench-net-user-udp-rx: datagrams=N bytes=B ms=T mbit_per_s=M
 *   bench-net-user-tcp-tx   a TCP connection to 10.0.2.2:net-user-tcp-port
 *                           (a sink on the host's loopback) carrying
 *                           net-user-tcp-bytes= bytes (default 64 MiB) of
 *                           the stream net_user_tcp.h defines, timed from
 *                           the first byte sent to the last acknowledged
 *                           (net-user-tcp-offloads=0: no checksum or TSO
 *                           offload even where the card has them)
 *     INFO bench-net-user-tcp-tx: bytes=B ms=T mbit_per_s=M mss=S tso=0|1 resends=R
 *   bench-net-user-tcp-rx   a TCP connection to 10.0.2.2:net-user-tcp-port
 *                           (a source on the host's loopback), taken until
 *                           the host's FIN, every byte checked; timed from
 *                           the first data segment to the last
 *     INFO bench-net-user-tcp-rx: bytes=B ms=T mbit_per_s=M mss=S dup_acks=D
 *
 * Each frames what it times with "measuring" and "measured" lines, where
 * scripts/bench samples the VMM's CPU time. */
#include "bench.h"
#include "clock.h"
#include "net.h"
#include "net_peer.h"
#include "net_user.h"
#include "net_user_tcp.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

#define UDP_PAYLOAD 1472 /* a full 1500-byte IP packet */

static uint16_t ping_seq;
static bool is_this_reply(const uint8_t* f, int len) {
    return net_user_is_echo_reply(f, len) && net_user_get16(f + 40) == ping_seq;
}

static bool bench_net_user_ping(void) {
    if (!net_find()) return skip("no virtio-net (run with --net user / -netdev user)");
    if (!net_user_bring_up()) return false;
    const unsigned count = (unsigned)cmdline_number("net-user-pings", 2000);
    CHECK(count > 0 && count <= 1000000, "net-user-pings=%u: 1 to 1000000", count);
    uint64_t* samples = alloc_zeroed(sizeof(uint64_t) * count, 8);
    static uint8_t ping[14 + 20 + 8 + 56];
    uint8_t* f = net_user_rx_frame();
    uint64_t total = 0;
    info("measuring");
    const uint64_t start = rdtsc();
    for (unsigned i = 0; i < count; ++i) {
        ping_seq = (uint16_t)(i + 1);
        const uint32_t len = net_user_echo_request(ping, ping_seq);
        const uint64_t sent = rdtsc();
        CHECK(net_user_send(ping, len), "echo request %u not sent", i);
        CHECK(net_user_wait_for(f, is_this_reply, NET_USER_REPLY_TIMEOUT_MS) > 0, "no reply to echo %u", i);
        samples[i] = rdtsc() - sent;
        total += samples[i];
    }
    const uint64_t ns = cycles_to_ns(rdtsc() - start);
    info("measured");
    sort_u64(samples, count);
    const uint64_t mean = cycles_to_ns(total / count), p50 = cycles_to_ns(samples[count / 2]),
                   p99 = cycles_to_ns(samples[count * 99 / 100]);
    info("ops=%u ms=%llu ops_per_s=%llu mean_us=%llu.%llu p50_us=%llu.%llu p99_us=%llu.%llu", count,
         (unsigned long long)(ns / 1000000), (unsigned long long)(count * 1000000000ull / (ns ? ns : 1)),
         (unsigned long long)(mean / 1000), (unsigned long long)(mean % 1000 / 100),
         (unsigned long long)(p50 / 1000), (unsigned long long)(p50 % 1000 / 100),
         (unsigned long long)(p99 / 1000), (unsigned long long)(p99 % 1000 / 100));
    return true;
}

static bool bench_net_user_udp_tx(void) {
    if (!net_find()) return skip("no virtio-net (run with --net user / -netdev user)");
    const unsigned port = (unsigned)cmdline_number("net-user-udp-port", 0);
    const unsigned count = (unsigned)cmdline_number("net-user-datagrams", 100000);
    if (port == 0 || port > 65535) return skip("no net-user-udp-port= (where the host counts the datagrams)");
    CHECK(count > 0, "net-user-datagrams=0");
    if (!net_user_bring_up()) return false;
    static uint8_t f[UDP_HEADERS + UDP_PAYLOAD];
    net_user_ethernet(f, net_user_host_mac, 0x0800);
    net_user_ipv4(f, 17, 8 + UDP_PAYLOAD, net_user_guest_ip, net_user_host_ip);
    uint8_t* udp = f + 34;
    net_user_put16(udp, 40002);
    net_user_put16(udp + 2, (uint16_t)port);
    net_user_put16(udp + 4, 8 + UDP_PAYLOAD);
    net_user_put16(udp + 6, 0);
    for (unsigned i = 0; i < UDP_PAYLOAD; ++i) f[UDP_HEADERS + i] = peer_pattern(11, i);
    uint16_t sum = (uint16_t)~csum_fold(csum_add(net_user_pseudo(f, 8 + UDP_PAYLOAD), udp, 8 + UDP_PAYLOAD));
    net_user_put16(udp + 6, sum ? sum : 0xffff);
    const struct net_hdr hdr = {0};
    unsigned queued = 0, done = 0;
    info("measuring");
    const uint64_t start = rdtsc();
    while (done < count) {
        while (queued < count && net_tx_add(&hdr, f, sizeof f, NET_LAYOUT_SPLIT, f)) ++queued; /* f: a non-null token */
        net_tx_kick();
        done += net_tx_reclaim();
    }
    const uint64_t ns = cycles_to_ns(rdtsc() - start);
    info("measured");
    const uint64_t bytes = (uint64_t)count * UDP_PAYLOAD;
    const uint64_t mbit = bytes * 8 * 1000 / (ns ? ns : 1);
    info("datagrams=%u bytes=%llu ms=%llu mbit_per_s=%llu", count, (unsigned long long)bytes,
         (unsigned long long)(ns / 1000000), (unsigned long long)mbit);
    return true;
}

static unsigned rx_port;
static bool is_bench_datagram(const uint8_t* f, int len) {
    return len == UDP_HEADERS + UDP_PAYLOAD && net_user_get16(f + 12) == 0x0800 && f[14 + 9] == 17 &&
           net_user_get16(f + 34 + 2) == rx_port;
}

static bool bench_net_user_udp_rx(void) {
    if (!net_find()) return skip("no virtio-net (run with --net user / -netdev user)");
    rx_port = (unsigned)cmdline_number("net-user-udp-rx-port", 0);
    const unsigned count = (unsigned)cmdline_number("net-user-datagrams", 100000);
    const uint64_t first_wait = cmdline_number("net-user-udp-rx-wait-ms", 10000);
    if (rx_port == 0 || rx_port > 65535)
        return skip("no net-user-udp-rx-port= (the guest port a hostfwd=udp rule forwards to)");
    CHECK(count > 0, "net-user-datagrams=0");
    /* The bring-up's ARP request also tells the stack this guest's MAC. */
    if (!net_user_bring_up()) return false;
    uint8_t* f = net_user_rx_frame();
    info("measuring"); /* the host starts sending now */
    CHECK(net_user_wait_for(f, is_bench_datagram, first_wait) > 0, "no datagram to port %u in %llu ms", rx_port,
          (unsigned long long)first_wait);
    const uint64_t first = rdtsc();
    uint64_t last = first;
    unsigned received = 1;
    while (received < count && net_user_wait_for(f, is_bench_datagram, 500) > 0) {
        ++received;
        last = rdtsc();
    }
    info("measured");
    const uint64_t ns = cycles_to_ns(last - first);
    const uint64_t bytes = (uint64_t)received * UDP_PAYLOAD;
    /* The first datagram opens the interval: the rate counts the others. */
    const uint64_t mbit = (bytes - UDP_PAYLOAD) * 8 * 1000 / (ns ? ns : 1);
    info("datagrams=%u bytes=%llu ms=%llu mbit_per_s=%llu", received, (unsigned long long)bytes,
         (unsigned long long)(ns / 1000000), (unsigned long long)mbit);
    return true;
}

static void tcp_report(const char* what, uint64_t bytes, uint64_t first, uint64_t last, const struct tcp_conn* c,
                       const char* counter, uint64_t count) {
    const uint64_t ns = cycles_to_ns(last - first);
    info("bytes=%llu ms=%llu mbit_per_s=%llu mss=%u %s%s=%llu", (unsigned long long)bytes,
         (unsigned long long)(ns / 1000000), (unsigned long long)(bytes * 8 * 1000 / (ns ? ns : 1)), c->mss, what,
         counter, (unsigned long long)count);
}

static bool bench_net_user_tcp_tx(void) {
    if (!net_find()) return skip("no virtio-net (run with --net user / -netdev user)");
    const unsigned port = (unsigned)cmdline_number("net-user-tcp-port", 0);
    const uint64_t bytes = cmdline_number("net-user-tcp-bytes", 64ull << 20);
    if (port == 0 || port > 65535) return skip("no net-user-tcp-port= (the host's sink)");
    struct tcp_conn c;
    if (!tcp_connect(&c, (uint16_t)port, NET_USER_REPLY_TIMEOUT_MS)) return false;
    uint64_t first = 0, last = 0;
    info("measuring");
    if (!tcp_send_stream(&c, bytes, &first, &last)) return false;
    info("measured");
    if (!tcp_close(&c, NET_USER_REPLY_TIMEOUT_MS)) return false;
    tcp_report(c.tso ? "tso=1 " : "tso=0 ", bytes, first, last, &c, "resends", c.retransmits);
    return true;
}

static bool bench_net_user_tcp_rx(void) {
    if (!net_find()) return skip("no virtio-net (run with --net user / -netdev user)");
    const unsigned port = (unsigned)cmdline_number("net-user-tcp-port", 0);
    const uint64_t expected = cmdline_number("net-user-tcp-bytes", 0);
    if (port == 0 || port > 65535) return skip("no net-user-tcp-port= (the host's source)");
    struct tcp_conn c;
    if (!tcp_connect(&c, (uint16_t)port, NET_USER_REPLY_TIMEOUT_MS)) return false;
    uint64_t first = 0, last = 0;
    info("measuring");
    if (!tcp_receive_stream(&c, &first, &last)) return false;
    info("measured");
    if (!tcp_close(&c, NET_USER_REPLY_TIMEOUT_MS)) return false;
    CHECK(expected == 0 || c.received == expected, "%llu bytes came, not the %llu the host was to send",
          (unsigned long long)c.received, (unsigned long long)expected);
    tcp_report("", c.received, first, last, &c, "dup_acks", c.dup_acks_sent);
    return true;
}

const struct test net_user_bench_tests[] = {
    {"bench-net-user-ping", bench_net_user_ping, "user network: ICMP echo round trip to 10.0.2.2"},
    {"bench-net-user-udp-tx", bench_net_user_udp_tx, "user network: UDP datagrams to the host's loopback"},
    {"bench-net-user-udp-rx", bench_net_user_udp_rx, "user network: UDP datagrams from the host, through hostfwd"},
    {"bench-net-user-tcp-tx", bench_net_user_tcp_tx, "user network: a TCP stream to the host's loopback"},
    {"bench-net-user-tcp-rx", bench_net_user_tcp_rx, "user network: a TCP stream from the host's loopback"},
};
const unsigned net_user_bench_test_count = ARRAY_SIZE(net_user_bench_tests);
