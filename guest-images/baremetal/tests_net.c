/* virtio-net conformance over a tap (virtio 1.2 section 5.1, legacy
 * interface), checked end to end against the host-side peer on the same
 * bridge (tests/guest/net-peer; see net_peer.h): frames the guest sends
 * arrive byte for byte on the host, frames the host writes arrive byte for
 * byte in the guest, with 10- and 12-byte headers, merged receive buffers,
 * checksum offload both ways, TSO both ways, backpressure, and a
 * misbehaving driver. Runs where minikvm has --net (or QEMU has
 * -device virtio-net-pci,disable-modern=on) and the runner started the
 * peer; without a device the tests skip. Tests of minikvm's own choices
 * (its log lines, what it drops) skip under QEMU. */
#include "clock.h"
#include "net.h"
#include "net_peer.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

#define NEED_NET()                                                                            \
    do {                                                                                      \
        if (!net_find()) return skip("no virtio-net (run minikvm with --net tap=NAME)");       \
    } while (0)

#define PEER_TIMEOUT_MS 3000
#define RX_BUFFER_PLAIN (12 + ETH_MAX_FRAME) /* the legacy minimum without MRG_RXBUF: header + frame */

extern char failure_reason[256];

/* Puts what the test was doing in front of the reason recorded by the
 * first failed check (fail() keeps only the first reason); returns false. */
__attribute__((format(printf, 1, 2))) static bool context(const char* fmt, ...) {
    char before[256], prefix[128];
    va_list args;
    va_start(args, fmt);
    vformat(prefix, sizeof prefix, fmt, args);
    va_end(args);
    memcpy(before, failure_reason, sizeof before);
    format(failure_reason, sizeof(failure_reason), "%s: %s", prefix, before);
    return false;
}

static bool on_minikvm(void) { return boot_info.kind == BOOT_LINUX; }

/* The received-frame scratch buffer: a whole GSO frame fits. */
static uint8_t* scratch(void) {
    static uint8_t* buf;
    buf = alloc_zeroed(NET_MAX_GSO_FRAME, 64);
    return buf;
}

/* Starts the device with `features`, posts `count` receive buffers of
 * `size` bytes and makes contact with the peer. */
static bool bring_up(uint32_t features, unsigned count, uint32_t size) {
    if (!net_start(features)) return false;
    CHECK(net_dev.features == (features & vp_device_features(&net_dev.dev) & ~BIT(VIRTIO_F_BAD_FEATURE)),
          "negotiated 0x%x", net_dev.features);
    if (!net_post_rx(count ? count : net_dev.rx.size / 2, size)) return false;
    return peer_hello();
}

/* A frame on the test's bridge that the peer did not send. The namespace's
 * kernel has no address and no IPv6, yet CI saw a 54-byte non-IPv4 frame
 * arrive in the middle of a test twice: not the device's doing, so a
 * receive loop skips it, naming what it was. (A device that garbled a
 * frame of the peer's is still caught: that frame never arrives.) */
static bool stray(const uint8_t* frame, int len) {
    if (len >= 14 && memcmp(frame + 6, peer_mac, 6) == 0) return false;
    info("skipped a %d-byte frame the peer did not send (EtherType 0x%04x from %02x:%02x:%02x:%02x:%02x:%02x)", len,
         len >= 14 ? (unsigned)(frame[12] << 8 | frame[13]) : 0u, frame[6], frame[7], frame[8], frame[9], frame[10],
         frame[11]);
    return true;
}

/* Whether a received frame is data frame `seq` of `len` bytes from the peer
 * to us, byte for byte. */
static bool check_data(const uint8_t* frame, int len, uint32_t seq, uint32_t want_len) {
    static uint8_t want[ETH_MAX_FRAME];
    peer_data_frame(want, want_len, seq);
    /* What arrived instead, when it is not the frame: for a stray frame on
     * the test's bridge, its type and sender say where it came from. */
    CHECK((uint32_t)len == want_len, "data frame %u: %d bytes, want %u (EtherType 0x%04x from %02x:%02x:%02x:%02x:%02x:%02x)",
          seq, len, want_len, len >= 14 ? (unsigned)(frame[12] << 8 | frame[13]) : 0u, frame[6], frame[7], frame[8],
          frame[9], frame[10], frame[11]);
    CHECK(memcmp(frame, net_dev.mac, 6) == 0 && memcmp(frame + 6, peer_mac, 6) == 0,
          "data frame %u: addresses %02x:..:%02x -> %02x:..:%02x", seq, frame[6], frame[11], frame[0], frame[5]);
    for (uint32_t i = 12; i < want_len; ++i)
        CHECK(frame[i] == want[i], "data frame %u: byte %u is 0x%02x, want 0x%02x", seq, i, frame[i], want[i]);
    return true;
}

/* Asks the peer to send data frames seq, seq+1... of these lengths and
 * receives them; each must arrive whole and in order, then the peer's
 * answer. Checks every header with `check_hdr` (may be NULL). */
static bool receive_data(uint32_t seq, const uint32_t* lens, unsigned count, bool (*check_hdr)(const struct net_hdr*, int)) {
    char list[256];
    int n = 0;
    for (unsigned i = 0; i < count; ++i) n += format(list + n, sizeof list - (size_t)n, "%s%u", i ? "," : "", lens[i]);
    const unsigned id = peer_send("send-data seq=%u lens=%s", seq, list);
    CHECK(id, "could not send the request");
    uint8_t* frame = scratch();
    unsigned got = 0;
    char reply[64];
    for (;;) {
        struct net_hdr hdr;
        const int len = net_receive(&hdr, frame, NET_MAX_GSO_FRAME, PEER_TIMEOUT_MS, true);
        if (len == -2) return false;
        CHECK(len >= 0, "received %u of %u data frames, then nothing for %u ms", got, count, PEER_TIMEOUT_MS);
        if (peer_is_reply(frame, len, id, reply, sizeof reply)) break;
        if (peer_is_control(frame, len)) continue; /* a late answer to an earlier request */
        if (stray(frame, len)) continue;
        CHECK(got < count, "more data frames than the %u sent", count);
        if (!check_data(frame, len, seq + got, lens[got])) return false;
        if (check_hdr && !check_hdr(&hdr, len)) return false;
        got++;
    }
    CHECK(strncmp(reply, "ok", 2) == 0, "peer: %s", reply);
    CHECK(got == count, "received %u of %u data frames before the peer's answer", got, count);
    return true;
}

/* Sends data frames seq, seq+1... of these lengths in `layout`, then has
 * the peer compare what reached its tap. */
static bool transmit_data(uint32_t seq, const uint32_t* lens, unsigned count, enum net_layout layout) {
    static const struct net_hdr none;
    uint8_t* frame = scratch();
    CHECK(peer_request(0, 0, PEER_TIMEOUT_MS, "capture"), "capture");
    char list[256];
    int n = 0;
    for (unsigned i = 0; i < count; ++i) {
        peer_data_frame(frame, lens[i], seq + i);
        if (!net_transmit(&none, frame, lens[i], layout)) return false;
        n += format(list + n, sizeof list - (size_t)n, "%s%u", i ? "," : "", lens[i]);
    }
    return peer_request(0, 0, PEER_TIMEOUT_MS, "verify-data seq=%u lens=%s", seq, list);
}

/* ---- net-identity --------------------------------------------------------- */

static bool test_net_identity(void) {
    NEED_NET();
    const struct pci_address a = net_dev.dev.pci;
    CHECK(pci_read8(a, PCI_REVISION) == 0, "revision %u, want 0 (legacy drivers need it)", pci_read8(a, PCI_REVISION));
    CHECK(pci_read16(a, PCI_SUBSYSTEM_VENDOR_ID) == VIRTIO_PCI_VENDOR, "subsystem vendor 0x%x",
          pci_read16(a, PCI_SUBSYSTEM_VENDOR_ID));
    CHECK(pci_read16(a, PCI_SUBSYSTEM_ID) == 1, "subsystem ID %u, want 1 (network)", pci_read16(a, PCI_SUBSYSTEM_ID));
    const uint32_t class_code = pci_read32(a, PCI_REVISION) >> 8;
    CHECK(class_code == 0x020000, "class 0x%06x, want 0x020000 (Ethernet controller)", class_code);
    CHECK(net_dev.dev.pin == 1, "interrupt pin %u, want 1 (INTA#)", net_dev.dev.pin);
    CHECK(net_dev.dev.bar_size >= VIRTIO_PCI_CONFIG + 8, "BAR0 is %u bytes", net_dev.dev.bar_size);
    if (on_minikvm())
        CHECK(net_dev.dev.irq == 15 + a.device, "interrupt line %u, want GSI 15 + slot %u", net_dev.dev.irq, a.device);
    vp_reset(&net_dev.dev);
    CHECK(vp_queue_size(&net_dev.dev, NET_RX) && vp_queue_size(&net_dev.dev, NET_TX), "receiveq or transmitq missing");
    info("00:%02x.0 I/O 0x%x+%u, INTA# -> GSI %u, queues %u/%u", a.device, net_dev.dev.io, net_dev.dev.bar_size,
         net_dev.dev.irq, vp_queue_size(&net_dev.dev, NET_RX), vp_queue_size(&net_dev.dev, NET_TX));
    return true;
}

/* ---- net-features --------------------------------------------------------- */

static bool test_net_features(void) {
    NEED_NET();
    const struct virtio_pci* d = &net_dev.dev;
    vp_reset(d);
    const uint32_t offered = vp_device_features(d);
    const uint32_t required = BIT(NET_F_MAC) | BIT(NET_F_STATUS) | BIT(NET_F_CSUM) | BIT(NET_F_GUEST_CSUM) |
                              BIT(NET_F_HOST_TSO4) | BIT(NET_F_HOST_TSO6) | BIT(NET_F_GUEST_TSO4) |
                              BIT(NET_F_GUEST_TSO6) | BIT(NET_F_HOST_ECN) | BIT(NET_F_GUEST_ECN) |
                              BIT(NET_F_MRG_RXBUF) | BIT(VIRTIO_F_RING_EVENT_IDX) | BIT(VIRTIO_F_RING_INDIRECT_DESC);
    CHECK((offered & required) == required, "features 0x%08x lack 0x%08x", offered, required & ~offered);
    if (on_minikvm()) {
        /* minikvm has no control queue, so nothing that needs one (5.1.3.1),
         * and no UFO (it cannot do it right for every host kernel). */
        const uint32_t never = BIT(NET_F_CTRL_VQ) | BIT(NET_F_CTRL_RX) | BIT(NET_F_CTRL_VLAN) |
                               BIT(NET_F_GUEST_ANNOUNCE) | BIT(NET_F_MQ) | BIT(NET_F_CTRL_MAC_ADDR) |
                               BIT(NET_F_HOST_UFO) | BIT(NET_F_GUEST_UFO);
        CHECK(!(offered & never), "features 0x%08x include 0x%08x", offered, offered & never);
        CHECK(vp_queue_size(d, 2) == 0, "a third queue (controlq) exists without CTRL_VQ");
    }
    /* Whatever subset is written sticks and is what the device then uses:
     * the header length follows MRG_RXBUF. */
    const uint32_t choices[2] = {0, BIT(NET_F_MRG_RXBUF) | BIT(NET_F_MAC)};
    for (unsigned i = 0; i < 2; ++i) {
        if (!net_start(choices[i])) return false;
        CHECK(vp_read32(d, VIRTIO_PCI_GUEST_FEATURES) == choices[i], "driver features read 0x%x, wrote 0x%x",
              vp_read32(d, VIRTIO_PCI_GUEST_FEATURES), choices[i]);
        vp_reset(d);
    }
    CHECK(vp_read32(d, VIRTIO_PCI_GUEST_FEATURES) == 0, "driver features 0x%x after reset",
          vp_read32(d, VIRTIO_PCI_GUEST_FEATURES));
    info("device offers 0x%08x", offered);
    return true;
}

/* ---- net-config ----------------------------------------------------------- */

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool test_net_config(void) {
    NEED_NET();
    const struct virtio_pci* d = &net_dev.dev;
    vp_reset(d);
    uint8_t mac[6];
    for (unsigned i = 0; i < 6; ++i) mac[i] = vp_read8(d, (uint16_t)(VIRTIO_PCI_CONFIG + NET_CONFIG_MAC + i));
    /* Bytes, words and a dword agree (minikvm: any width; QEMU too for
     * the device-specific part). */
    CHECK(vp_read16(d, VIRTIO_PCI_CONFIG) == (mac[0] | mac[1] << 8), "config word 0 reads 0x%x",
          vp_read16(d, VIRTIO_PCI_CONFIG));
    CHECK(vp_read32(d, VIRTIO_PCI_CONFIG + 2) ==
              ((uint32_t)mac[2] | (uint32_t)mac[3] << 8 | (uint32_t)mac[4] << 16 | (uint32_t)mac[5] << 24),
          "config dword 2 reads 0x%x", vp_read32(d, VIRTIO_PCI_CONFIG + 2));
    const uint16_t status = vp_read16(d, VIRTIO_PCI_CONFIG + NET_CONFIG_STATUS);
    CHECK(status & NET_S_LINK_UP, "status 0x%x: link down", status);
    CHECK(!(mac[0] & 1), "MAC %02x:%02x:%02x:%02x:%02x:%02x is a multicast address", mac[0], mac[1], mac[2], mac[3],
          mac[4], mac[5]);
    /* The runner passes the MAC it gave the VMM as net-mac=; without it the
     * VMM chose one, which must be locally administered. */
    char given[32];
    if (cmdline_value("net-mac", given, sizeof given)) {
        CHECK(strlen(given) == 17, "net-mac=%s is not aa:bb:cc:dd:ee:ff", given);
        for (unsigned i = 0; i < 6; ++i) {
            const int hi = hex_digit(given[3 * i]), lo = hex_digit(given[3 * i + 1]);
            CHECK(hi >= 0 && lo >= 0, "net-mac=%s is not aa:bb:cc:dd:ee:ff", given);
            CHECK(mac[i] == (uint8_t)(hi << 4 | lo), "config MAC byte %u is 0x%02x, the VMM was given %s", i, mac[i],
                  given);
        }
    } else if (on_minikvm()) {
        CHECK(mac[0] & 2, "a chosen MAC must be locally administered: first byte 0x%02x", mac[0]);
    }
    info("MAC %02x:%02x:%02x:%02x:%02x:%02x, status 0x%x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], status);
    return true;
}

/* ---- net-transmit --------------------------------------------------------- */

static bool test_net_transmit(void) {
    NEED_NET();
    static const uint32_t lens[] = {60, 64, 100, 1000, 1513, ETH_MAX_FRAME};
    static const char* const layout_names[] = {"split", "one", "pieces", "indirect"};
    /* Both header sizes: 10 bytes, then 12 with MRG_RXBUF (the device must
     * skip exactly that much before the frame). */
    const uint32_t feature_sets[2] = {BIT(VIRTIO_F_RING_INDIRECT_DESC),
                                      BIT(VIRTIO_F_RING_INDIRECT_DESC) | BIT(NET_F_MRG_RXBUF)};
    uint32_t seq = 100;
    for (unsigned f = 0; f < 2; ++f) {
        if (!bring_up(feature_sets[f], 0, 2048)) return false;
        for (unsigned layout = 0; layout < 4; ++layout) {
            if (layout == NET_LAYOUT_INDIRECT && !(net_dev.features & BIT(VIRTIO_F_RING_INDIRECT_DESC))) continue;
            if (!transmit_data(seq, lens, ARRAY_SIZE(lens), (enum net_layout)layout))
                return context("%u-byte header, %s layout", net_dev.hdr_len, layout_names[layout]);
            seq += ARRAY_SIZE(lens);
        }
    }
    info("%u frames of 60..1514 bytes arrived byte-exact, 10- and 12-byte headers, 4 layouts", seq - 100);
    return true;
}

/* ---- net-receive ---------------------------------------------------------- */

static bool plain_header(const struct net_hdr* h, int len) {
    (void)len;
    CHECK(h->gso_type == NET_HDR_GSO_NONE, "received gso_type %u for a plain frame", h->gso_type);
    return true;
}

static bool test_net_receive(void) {
    NEED_NET();
    static const uint32_t lens[] = {60, 61, 64, 128, 1000, 1513, ETH_MAX_FRAME};
    /* Without MRG_RXBUF: one buffer per frame, exactly header + 1514. */
    if (!bring_up(0, 0, 10 + ETH_MAX_FRAME)) return false;
    if (!receive_data(200, lens, ARRAY_SIZE(lens), plain_header)) return context("10-byte header");
    /* A whole ring's worth in one go. */
    uint32_t many[32];
    for (unsigned i = 0; i < ARRAY_SIZE(many); ++i) many[i] = 60 + 45 * i;
    if (!receive_data(300, many, ARRAY_SIZE(many), plain_header)) return context("burst");
    info("%zu frames arrived byte-exact in %u-byte buffers", ARRAY_SIZE(lens) + ARRAY_SIZE(many),
         10 + ETH_MAX_FRAME);
    return true;
}

/* ---- net-receive-mergeable ------------------------------------------------ */

static unsigned spans[3];

static bool mergeable_header(const struct net_hdr* h, int len) {
    /* 5.1.6.4.2: num_buffers says how many buffers the frame (with its
     * 12-byte header) filled; with 256-byte buffers that is known. */
    const unsigned want = (unsigned)(12 + len + 255) / 256;
    CHECK(h->num_buffers == want, "%d-byte frame in 256-byte buffers: num_buffers %u, want %u", len, h->num_buffers,
          want);
    spans[want > 2 ? 2 : want - 1]++;
    return plain_header(h, len);
}

static bool test_net_receive_mergeable(void) {
    NEED_NET();
    static const uint32_t lens[] = {60, 244, 245, 500, 1000, 1513, ETH_MAX_FRAME, 60};
    memset(spans, 0, sizeof spans);
    if (!bring_up(BIT(NET_F_MRG_RXBUF), 0, 256)) return false;
    CHECK(net_dev.features & BIT(NET_F_MRG_RXBUF), "MRG_RXBUF not negotiated");
    if (!receive_data(400, lens, ARRAY_SIZE(lens), mergeable_header)) return false;
    CHECK(spans[0] && spans[2], "frames in one buffer %u, in several %u", spans[0], spans[2]);
    info("%zu frames byte-exact in 256-byte buffers: %u in one, %u in two, %u in more", ARRAY_SIZE(lens), spans[0],
         spans[1], spans[2]);
    return true;
}

/* ---- net-tx-checksum ------------------------------------------------------ */

static bool tx_l4(bool tcp, uint32_t payload, uint32_t seed, const struct net_hdr* hdr, const char* check) {
    uint8_t* frame = scratch();
    const uint32_t len = tcp ? peer_tcp_frame(frame, payload, seed, hdr->flags & NET_HDR_F_NEEDS_CSUM)
                             : peer_udp_frame(frame, payload, seed, hdr->flags & NET_HDR_F_NEEDS_CSUM);
    CHECK(peer_request(0, 0, PEER_TIMEOUT_MS, "capture"), "capture");
    if (!net_transmit(hdr, frame, len, NET_LAYOUT_SPLIT)) return false;
    return peer_request(0, 0, PEER_TIMEOUT_MS, "verify-l4 proto=%s seed=%u payload=%u %s", tcp ? "tcp" : "udp", seed,
                        payload, check);
}

static bool test_net_tx_checksum(void) {
    NEED_NET();
    if (!bring_up(BIT(NET_F_CSUM), 0, 2048)) return false;
    CHECK(net_dev.features & BIT(NET_F_CSUM), "CSUM not negotiated");
    /* NEEDS_CSUM: the field holds the pseudo-header sum; the device (here
     * the host kernel behind the tap) finishes it from csum_start. */
    const struct net_hdr tcp = {NET_HDR_F_NEEDS_CSUM, 0, 0, 0, L4_START, TCP_CSUM_OFFSET, 0};
    const struct net_hdr udp = {NET_HDR_F_NEEDS_CSUM, 0, 0, 0, L4_START, UDP_CSUM_OFFSET, 0};
    const struct net_hdr none = {0, 0, 0, 0, 0, 0, 0};
    if (!tx_l4(true, 1000, 11, &tcp, "mss=0")) return context("TCP NEEDS_CSUM");
    if (!tx_l4(true, 1, 12, &tcp, "mss=0")) return context("TCP NEEDS_CSUM, odd length");
    if (!tx_l4(false, 1430, 13, &udp, "mss=0")) return context("UDP NEEDS_CSUM");
    /* A full checksum without the flag goes out untouched. */
    if (!tx_l4(true, 777, 14, &none, "mss=0")) return context("TCP, checksum done");
    info("TCP and UDP with NEEDS_CSUM arrived with correct checksums");
    return true;
}

/* ---- net-rx-checksum ------------------------------------------------------ */

/* Receives the peer's TCP frame of `payload` bytes (seed) and checks it;
 * returns the header through *out. */
static bool rx_tcp(uint32_t seed, uint32_t payload, unsigned gso, struct net_hdr* out, unsigned* frames) {
    const unsigned id = peer_send("send-tcp seed=%u payload=%u gso=%u partial=1", seed, payload, gso);
    CHECK(id, "could not send the request");
    uint8_t* frame = scratch();
    char reply[64];
    uint32_t joined = 0;
    *frames = 0;
    for (;;) {
        struct net_hdr hdr;
        const int len = net_receive(&hdr, frame, NET_MAX_GSO_FRAME, PEER_TIMEOUT_MS, true);
        if (len == -2) return false;
        CHECK(len >= 0, "the TCP frame did not arrive (%u segments, %u payload bytes so far)", *frames, joined);
        if (peer_is_reply(frame, len, id, reply, sizeof reply)) break;
        if (peer_is_control(frame, len)) continue;
        if (stray(frame, len)) continue;
        CHECK(len >= TCP_HEADERS && frame[12] == 8 && frame[13] == 0 && frame[23] == 6, "not an IPv4 TCP frame (%d bytes)",
              len);
        CHECK(hdr.gso_type == NET_HDR_GSO_NONE || (net_dev.features & BIT(NET_F_GUEST_TSO4)),
              "gso_type %u without GUEST_TSO4 negotiated", hdr.gso_type);
        const uint32_t ip_len = (uint32_t)(frame[16] << 8 | frame[17]);
        CHECK(14 + ip_len <= (uint32_t)len, "IPv4 length %u in a %d-byte frame", ip_len, len);
        if (hdr.flags & NET_HDR_F_NEEDS_CSUM) {
            /* 5.1.6.4: finish the checksum the way the device says. */
            CHECK(hdr.csum_start == L4_START && hdr.csum_offset == TCP_CSUM_OFFSET, "NEEDS_CSUM with start %u offset %u",
                  hdr.csum_start, hdr.csum_offset);
            uint8_t* field = frame + hdr.csum_start + hdr.csum_offset;
            const uint16_t c = (uint16_t)~csum_fold(csum_add(0, frame + hdr.csum_start, 14 + ip_len - hdr.csum_start));
            field[0] = (uint8_t)(c >> 8), field[1] = (uint8_t)c;
        }
        CHECK(peer_l4_checksum_ok(frame, (uint32_t)len), "segment %u: checksum wrong (flags 0x%x)", *frames, hdr.flags);
        const uint32_t body = ip_len - 40;
        for (uint32_t i = 0; i < body; ++i)
            CHECK(frame[TCP_HEADERS + i] == peer_pattern(seed, joined + i), "payload byte %u differs", joined + i);
        joined += body;
        *out = hdr;
        ++*frames;
    }
    CHECK(strncmp(reply, "ok", 2) == 0, "peer: %s", reply);
    CHECK(joined == payload, "%u of %u payload bytes arrived", joined, payload);
    return true;
}

static bool test_net_rx_checksum(void) {
    NEED_NET();
    struct net_hdr hdr;
    unsigned frames;
    /* With GUEST_CSUM the host may hand the frame over with the checksum
     * still to be done (NEEDS_CSUM) or already checked (DATA_VALID). */
    if (!bring_up(BIT(NET_F_GUEST_CSUM), 0, 2048)) return false;
    CHECK(net_dev.features & BIT(NET_F_GUEST_CSUM), "GUEST_CSUM not negotiated");
    if (!rx_tcp(21, 1200, 0, &hdr, &frames)) return context("GUEST_CSUM");
    const uint8_t with_flags = hdr.flags;
    CHECK(with_flags & (NET_HDR_F_NEEDS_CSUM | NET_HDR_F_DATA_VALID), "GUEST_CSUM: flags 0x%x, the host left the checksum to us",
          with_flags);
    /* Without it the device must deliver a finished checksum and no flags
     * (5.1.6.4: NEEDS_CSUM only if negotiated): the tap's offloads follow
     * the driver's features. */
    if (!bring_up(0, 0, 2048)) return false;
    if (!rx_tcp(22, 1200, 0, &hdr, &frames)) return context("no GUEST_CSUM");
    CHECK(!(hdr.flags & NET_HDR_F_NEEDS_CSUM), "NEEDS_CSUM set without GUEST_CSUM");
    info("GUEST_CSUM: flags 0x%x; without: flags 0x%x, checksum complete", with_flags, hdr.flags);
    return true;
}

/* ---- net-tso-tx ----------------------------------------------------------- */

static bool test_net_tso_tx(void) {
    NEED_NET();
    if (!bring_up(BIT(NET_F_CSUM) | BIT(NET_F_HOST_TSO4), 0, 2048)) return false;
    CHECK((net_dev.features & (BIT(NET_F_CSUM) | BIT(NET_F_HOST_TSO4))) == (BIT(NET_F_CSUM) | BIT(NET_F_HOST_TSO4)),
          "CSUM and HOST_TSO4 not negotiated");
    /* One 64 KiB TCP super-frame; the host cuts it into MSS segments, each
     * with its own headers and checksum (the peer checks every one). */
    const struct net_hdr gso = {NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_TCPV4, TCP_HEADERS, GSO_MSS, L4_START,
                                TCP_CSUM_OFFSET, 0};
    char check[32];
    format(check, sizeof check, "mss=%u", GSO_MSS);
    if (!tx_l4(true, TCP_MAX_PAYLOAD, 31, &gso, check)) return context("64 KiB TSO frame");
    if (!tx_l4(true, 3 * GSO_MSS + 5, 32, &gso, check)) return context("4-segment TSO frame");
    info("a %u-byte TCP frame arrived as %u segments of MSS %u", TCP_HEADERS + TCP_MAX_PAYLOAD,
         (TCP_MAX_PAYLOAD + GSO_MSS - 1) / GSO_MSS, GSO_MSS);
    return true;
}

/* ---- net-tso-rx ----------------------------------------------------------- */

static bool test_net_tso_rx(void) {
    NEED_NET();
    struct net_hdr hdr;
    unsigned frames;
    /* With GUEST_TSO4 (and merged 4 KiB buffers) the device may hand over
     * the peer's 64 KiB GSO frame whole, its header saying how to cut it.
     * Whether it gets it whole is the host kernel's call: a GSO frame
     * written into one tap is marked untrusted ("dodgy") and is cut into
     * segments before it leaves through another tap (taps do not claim
     * NETIF_F_GSO_ROBUST), so on this bridge it usually arrives as
     * segments, each with gso_type NONE. Both are checked byte for byte. */
    const uint32_t big = BIT(NET_F_GUEST_CSUM) | BIT(NET_F_GUEST_TSO4) | BIT(NET_F_MRG_RXBUF);
    if (!bring_up(big, 0, 4096)) return false;
    CHECK((net_dev.features & big) == big, "GUEST_CSUM, GUEST_TSO4, MRG_RXBUF not all negotiated");
    if (!rx_tcp(41, TCP_MAX_PAYLOAD, GSO_MSS, &hdr, &frames)) return context("GUEST_TSO4");
    if (frames == 1)
        CHECK((hdr.gso_type & ~NET_HDR_GSO_ECN) == NET_HDR_GSO_TCPV4 && hdr.gso_size == GSO_MSS,
              "GUEST_TSO4: gso_type %u gso_size %u, want TCPV4 %u", hdr.gso_type, hdr.gso_size, GSO_MSS);
    else
        CHECK(hdr.gso_type == NET_HDR_GSO_NONE, "GUEST_TSO4: segment with gso_type %u", hdr.gso_type);
    const unsigned with_tso = frames;
    /* Without it the device must never pass a GSO frame: segments only. */
    if (!bring_up(BIT(NET_F_GUEST_CSUM), 0, 2048)) return false;
    if (!rx_tcp(42, TCP_MAX_PAYLOAD, GSO_MSS, &hdr, &frames)) return context("no GUEST_TSO4");
    const unsigned want = (TCP_MAX_PAYLOAD + GSO_MSS - 1) / GSO_MSS;
    CHECK(frames == want, "no GUEST_TSO4: %u frames, want %u segments", frames, want);
    CHECK(hdr.gso_type == NET_HDR_GSO_NONE, "no GUEST_TSO4: gso_type %u", hdr.gso_type);
    info("%u-byte GSO frame: with GUEST_TSO4 %u frame(s), without %u segments", TCP_HEADERS + TCP_MAX_PAYLOAD,
         with_tso, frames);
    return true;
}

/* ---- net-backpressure ----------------------------------------------------- */

static bool test_net_backpressure(void) {
    NEED_NET();
    /* Two receive buffers for eight frames: two arrive, six wait on the
     * host (in the tap, not dropped, not written anywhere), and come once
     * buffers are posted. */
    if (!bring_up(0, 2, 2048)) return false;
    static const uint32_t lens[8] = {60, 1514, 300, 61, 1000, 77, 1514, 64};
    const unsigned id = peer_send("send-data seq=500 lens=60,1514,300,61,1000,77,1514,64");
    CHECK(id, "could not send the request");
    uint8_t* frame = scratch();
    struct net_hdr hdr;
    for (unsigned i = 0; i < 2; ++i) {
        const int len = net_receive(&hdr, frame, NET_MAX_GSO_FRAME, PEER_TIMEOUT_MS, false);
        CHECK(len >= 0, "frame %u of the first two did not arrive", i);
        if (!check_data(frame, len, 500 + i, lens[i])) return false;
    }
    /* No buffer left: for 300 ms the device must leave the ring alone. */
    const uint16_t used_before = *net_dev.rx.used_idx;
    delay_us(300000);
    CHECK(*net_dev.rx.used_idx == used_before, "used index moved from %u to %u with no buffer posted", used_before,
          *net_dev.rx.used_idx);
    CHECK(!(vp_status(&net_dev.dev) & VIRTIO_STATUS_NEEDS_RESET), "device broke with no buffer posted");
    /* Post buffers again (the two we have, and more): the rest arrives in
     * order, byte for byte, then the peer's answer. */
    for (unsigned i = 0; i < 2; ++i) net_repost_rx(net_dev.rx_bufs[i]);
    for (unsigned i = 2; i < 16; ++i) {
        net_dev.rx_bufs[i] = alloc_zeroed(net_dev.rx_buf_size, 64);
        net_repost_rx(net_dev.rx_bufs[i]);
    }
    net_rx_kick();
    unsigned got = 2;
    char reply[64];
    for (;;) {
        const int len = net_receive(&hdr, frame, NET_MAX_GSO_FRAME, PEER_TIMEOUT_MS, true);
        CHECK(len >= 0, "after posting buffers: %u of 8 frames, then nothing", got);
        if (peer_is_reply(frame, len, id, reply, sizeof reply)) break;
        if (peer_is_control(frame, len)) continue;
        if (stray(frame, len)) continue;
        CHECK(got < 8, "more than 8 frames");
        if (!check_data(frame, len, 500 + got, lens[got])) return false;
        got++;
    }
    CHECK(got == 8, "%u of 8 frames arrived", got);
    info("2 frames, 300 ms with no buffer and no ring access, then the other 6 in order");
    return true;
}

/* ---- net-tx-malformed (minikvm) ------------------------------------------- */

static bool test_net_tx_malformed(void) {
    NEED_NET();
    if (!on_minikvm()) return skip("checks minikvm's own drop rules and log lines");
    /* CSUM and TSO4 only: TSO6 is not negotiated. */
    if (!bring_up(BIT(NET_F_CSUM) | BIT(NET_F_HOST_TSO4), 0, 2048)) return false;
    uint8_t* frame = scratch();
    const uint32_t len = peer_tcp_frame(frame, 3000, 51, true);
    const struct net_hdr bad[] = {
        /* gso_type 7 does not exist */
        {NET_HDR_F_NEEDS_CSUM, 7, TCP_HEADERS, GSO_MSS, L4_START, TCP_CSUM_OFFSET, 0},
        /* TCPV6 without HOST_TSO6 negotiated */
        {NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_TCPV6, TCP_HEADERS, GSO_MSS, L4_START, TCP_CSUM_OFFSET, 0},
        /* hdr_len beyond the frame */
        {NET_HDR_F_NEEDS_CSUM, NET_HDR_GSO_TCPV4, 5000, GSO_MSS, L4_START, TCP_CSUM_OFFSET, 0},
        /* checksum position beyond the frame */
        {NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 4000, TCP_CSUM_OFFSET, 0},
    };
    CHECK(peer_request(0, 0, PEER_TIMEOUT_MS, "capture"), "capture");
    for (unsigned i = 0; i < ARRAY_SIZE(bad); ++i)
        if (!net_transmit(&bad[i], frame, len, NET_LAYOUT_SPLIT)) return context("bad header %u", i);
    /* Larger than any offload allows: no GSO, 9000 bytes. */
    static const struct net_hdr none;
    peer_data_frame(frame, 9000, 600);
    if (!net_transmit(&none, frame, 9000, NET_LAYOUT_SPLIT)) return context("oversize frame");
    /* All came back used, nothing reached the host, the device runs on. */
    if (!peer_request(0, 0, PEER_TIMEOUT_MS, "verify-none")) return false;
    CHECK(!(vp_status(&net_dev.dev) & VIRTIO_STATUS_NEEDS_RESET), "status 0x%x after bad headers",
          vp_status(&net_dev.dev));
    static const uint32_t good[] = {60, 1514};
    if (!transmit_data(601, good, 2, NET_LAYOUT_SPLIT)) return context("after the bad frames");
    info("%zu malformed frames dropped, the device kept working", ARRAY_SIZE(bad) + 1);
    return true;
}

/* ---- net-rx-small-buffers (minikvm) --------------------------------------- */

static bool test_net_rx_small_buffers(void) {
    NEED_NET();
    if (!on_minikvm()) return skip("checks minikvm's own handling of a driver's too-small buffers");
    /* Without MRG_RXBUF a frame must fit one buffer (5.1.6.3.1); 200-byte
     * buffers cannot take 1514 bytes. minikvm drops such a frame (logged)
     * and leaves the buffer for the next one. */
    if (!bring_up(0, 0, 200)) return false;
    const unsigned id = peer_send("send-data seq=700 lens=1514,100");
    CHECK(id, "could not send the request");
    uint8_t* frame = scratch();
    struct net_hdr hdr;
    char reply[64];
    unsigned got = 0;
    for (;;) {
        const int len = net_receive(&hdr, frame, NET_MAX_GSO_FRAME, PEER_TIMEOUT_MS, true);
        if (len == -2) return false;
        CHECK(len >= 0, "no answer after the oversize frame");
        if (peer_is_reply(frame, len, id, reply, sizeof reply)) break;
        if (peer_is_control(frame, len)) continue;
        if (stray(frame, len)) continue;
        CHECK(len <= 190, "a %d-byte frame in 200-byte buffers", len);
        /* Only the small frame may arrive, whole. */
        if (!check_data(frame, len, 701, 100)) return false;
        got++;
    }
    CHECK(got == 1, "%u frames arrived, want the 100-byte one", got);
    CHECK(!(vp_status(&net_dev.dev) & VIRTIO_STATUS_NEEDS_RESET), "device broke");
    info("the 1514-byte frame was dropped, the 100-byte one arrived");
    return true;
}

const struct test net_tests[] = {
    {"net-identity", test_net_identity, "virtio-net: PCI IDs, class, BAR, interrupt line, queues"},
    {"net-features", test_net_features, "virtio-net: offered features (offloads, MRG_RXBUF, no control queue)"},
    {"net-config", test_net_config, "virtio-net: MAC (the one given with mac=), link status, config widths"},
    {"net-transmit", test_net_transmit, "virtio-net: frames arrive byte-exact on the tap, 10/12-byte headers, 4 layouts"},
    {"net-receive", test_net_receive, "virtio-net: frames from the tap arrive byte-exact, no MRG_RXBUF"},
    {"net-receive-mergeable", test_net_receive_mergeable, "virtio-net: MRG_RXBUF, frames across 256-byte buffers"},
    {"net-tx-checksum", test_net_tx_checksum, "virtio-net: NEEDS_CSUM on transmit ends as a correct checksum"},
    {"net-rx-checksum", test_net_rx_checksum, "virtio-net: GUEST_CSUM on receive, and without it full checksums"},
    {"net-tso-tx", test_net_tso_tx, "virtio-net: a 64 KiB TSO frame leaves as MSS segments"},
    {"net-tso-rx", test_net_tso_rx, "virtio-net: a 64 KiB GSO frame from the host, with and without GUEST_TSO4"},
    {"net-backpressure", test_net_backpressure, "virtio-net: no receive buffers: frames wait, then arrive"},
    {"net-tx-malformed", test_net_tx_malformed, "virtio-net (minikvm): bad transmit headers dropped, device lives"},
    {"net-rx-small-buffers", test_net_rx_small_buffers, "virtio-net (minikvm): receive buffers too small, no MRG_RXBUF"},
};
const unsigned net_test_count = ARRAY_SIZE(net_tests);
