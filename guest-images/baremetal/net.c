/* The guest's polled virtio-net driver; see net.h. */
#include "net.h"

#include "clock.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

struct net net_dev;

/* Per transmit head: a copy of the header (the device reads it after
 * net_tx_add returns) and, for NET_LAYOUT_ONE, header and frame together. */
static uint8_t (*tx_headers)[16];
static uint8_t* tx_one_buffer;

static void net_cleanup(void) {
    /* The device must forget our rings before the next test reuses their
     * memory. */
    if (net_dev.dev.io) vp_reset(&net_dev.dev);
}

bool net_find(void) {
    memset(&net_dev, 0, sizeof net_dev);
    if (!virtio_pci_find(VIRTIO_PCI_DEVICE_NET, &net_dev.dev)) return false;
    test_cleanup = net_cleanup;
    return true;
}

bool net_start(uint32_t wanted) {
    struct net* n = &net_dev;
    n->features = vp_begin_init(&n->dev, wanted);
    /* 5.1.6: the legacy header has num_buffers only with MRG_RXBUF. */
    n->hdr_len = (n->features & BIT(NET_F_MRG_RXBUF)) ? 12 : 10;
    CHECK(vp_setup_queue(&n->dev, &n->rx, NET_RX, n->features), "receiveq: no queue 0");
    CHECK(vp_setup_queue(&n->dev, &n->tx, NET_TX, n->features), "transmitq: no queue 1");
    for (unsigned i = 0; i < 6; ++i) n->mac[i] = vp_read8(&n->dev, (uint16_t)(n->dev.config + NET_CONFIG_MAC + i));
    n->rx_bufs = alloc_zeroed(sizeof(uint8_t*) * n->rx.size, 8);
    n->rx_count = 0;
    n->tx_tables = alloc_zeroed(sizeof(struct virtq_desc) * 4 * n->tx.size, 16);
    tx_headers = alloc_zeroed(16 * (size_t)n->tx.size, 16);
    tx_one_buffer = alloc_zeroed(NET_MAX_GSO_FRAME + 16, 16);
    vp_set_status(&n->dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
    CHECK(vp_status(&n->dev) == (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK),
          "status 0x%x after DRIVER_OK", vp_status(&n->dev));
    return true;
}

void net_repost_rx(uint8_t* buf) {
    const struct virtq_buf b = {buf, net_dev.rx_buf_size};
    /* Cannot fail: the buffer's own descriptor just came back. */
    (void)virtq_add(&net_dev.rx, &b, 0, 1, buf);
}

void net_rx_kick(void) { vp_kick(&net_dev.dev, &net_dev.rx); }

bool net_post_rx(unsigned count, uint32_t size) {
    struct net* n = &net_dev;
    CHECK(count <= n->rx.size && n->rx_count == 0, "cannot post %u receive buffers (ring of %u, %u posted)", count,
          n->rx.size, n->rx_count);
    n->rx_buf_size = size;
    for (unsigned i = 0; i < count; ++i) {
        n->rx_bufs[i] = alloc_zeroed(size, 64);
        net_repost_rx(n->rx_bufs[i]);
    }
    n->rx_count = count;
    net_rx_kick();
    return true;
}

/* The next used receive buffer, or NULL when none came within the deadline. */
static uint8_t* next_rx(uint64_t deadline, uint32_t* len) {
    struct virtq* rx = &net_dev.rx;
    while (!virtq_has_used(rx)) {
        if (now_ns() > deadline) return 0;
        cpu_relax();
    }
    return virtq_get(rx, len);
}

int net_receive(struct net_hdr* hdr, uint8_t* frame, uint32_t max, uint64_t timeout_ms, bool repost) {
    struct net* n = &net_dev;
    const uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
    uint32_t len = 0;
    uint8_t* buf = next_rx(deadline, &len);
    if (!buf) {
        if (n->rx.device_error) return fail("receiveq: %s", n->rx.device_error), -2;
        return -1;
    }
    /* 5.1.6.4: the header comes first, whole, in the first buffer. */
    if (len < n->hdr_len) return fail("receive: used length %u is shorter than the %u-byte header", len, n->hdr_len), -2;
    memset(hdr, 0, sizeof *hdr);
    memcpy(hdr, buf, n->hdr_len);
    const bool merged = n->features & BIT(NET_F_MRG_RXBUF);
    /* Without MRG_RXBUF the field is not there; one buffer holds the frame. */
    const unsigned buffers = merged ? hdr->num_buffers : 1;
    if (buffers == 0) return fail("receive: num_buffers is 0"), -2;
    uint32_t total = 0;
    for (unsigned i = 0; i < buffers; ++i) {
        if (i > 0) {
            /* The rest of the frame is in the next used buffers (5.1.6.4.2):
             * the device made them all visible at once. */
            buf = next_rx(now_ns() + 1000000000ull, &len);
            if (!buf) return fail("receive: buffer %u of %u never came (%s)", i + 1, buffers,
                                  n->rx.device_error ? n->rx.device_error : "timeout"), -2;
        }
        const uint32_t skip = i == 0 ? n->hdr_len : 0;
        const uint32_t part = len - skip;
        for (uint32_t k = 0; k < part && total + k < max; ++k) frame[total + k] = buf[skip + k];
        total += part;
        if (repost) net_repost_rx(buf);
    }
    if (repost) net_rx_kick();
    return (int)total;
}

bool net_tx_add(const struct net_hdr* hdr, const void* frame, uint32_t len, enum net_layout layout, void* token) {
    struct net* n = &net_dev;
    struct virtq* tx = &n->tx;
    const unsigned need = layout == NET_LAYOUT_ONE ? 1 : layout == NET_LAYOUT_SPLIT ? 2 : layout == NET_LAYOUT_PIECES ? 4 : 1;
    if (tx->num_free < need) return false;
    const uint16_t head = tx->free_head; /* virtq_add takes the free list's head first */
    uint8_t* h = tx_headers[head];
    memcpy(h, hdr, n->hdr_len);
    struct virtq_buf bufs[4];
    unsigned count = 0;
    const uint8_t* f = frame;
    switch (layout) {
        case NET_LAYOUT_ONE:
            /* Only for one frame at a time: the bounce buffer is shared. */
            memcpy(tx_one_buffer, h, n->hdr_len);
            memcpy(tx_one_buffer + n->hdr_len, frame, len);
            bufs[count++] = (struct virtq_buf){tx_one_buffer, n->hdr_len + len};
            break;
        case NET_LAYOUT_PIECES: {
            const uint32_t a = len / 3, b = len / 3;
            bufs[count++] = (struct virtq_buf){h, n->hdr_len};
            bufs[count++] = (struct virtq_buf){f, a};
            bufs[count++] = (struct virtq_buf){f + a, b};
            bufs[count++] = (struct virtq_buf){f + a + b, len - a - b};
            break;
        }
        default:
            bufs[count++] = (struct virtq_buf){h, n->hdr_len};
            bufs[count++] = (struct virtq_buf){f, len};
    }
    const int got = layout == NET_LAYOUT_INDIRECT
                        ? virtq_add_indirect(tx, bufs, count, 0, &n->tx_tables[4 * head], token)
                        : virtq_add(tx, bufs, count, 0, token);
    return got == head;
}

void net_tx_kick(void) { vp_kick(&net_dev.dev, &net_dev.tx); }

unsigned net_tx_reclaim(void) {
    unsigned n = 0;
    uint32_t len;
    while (virtq_get(&net_dev.tx, &len)) n++;
    return n;
}

bool net_transmit(const struct net_hdr* hdr, const void* frame, uint32_t len, enum net_layout layout) {
    static int token;
    struct virtq* tx = &net_dev.tx;
    CHECK(net_tx_add(hdr, frame, len, layout, &token), "transmitq full");
    net_tx_kick();
    const uint64_t deadline = now_ns() + 2000000000ull;
    while (!virtq_has_used(tx)) {
        CHECK(now_ns() < deadline, "transmit of %u bytes not completed in 2 s (status 0x%x)", len,
              vp_status(&net_dev.dev));
        cpu_relax();
    }
    uint32_t used_len = 1;
    void* got = virtq_get(tx, &used_len);
    CHECK(got == &token, "transmit: used ring returned %p (%s)", got, tx->device_error ? tx->device_error : "");
    /* 2.7.8: the device wrote nothing into a chain with no writable buffer. */
    CHECK(used_len == 0, "transmit: used length %u, want 0", used_len);
    return true;
}
