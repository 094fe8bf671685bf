/* The guest's virtio-net driver (virtio 1.2 section 5.1, legacy interface),
 * polled: the state shared by the network tests (tests_net.c) and the
 * network benchmarks (bench_net.c).
 *
 * Every frame travels with a virtio_net_hdr in front (5.1.6): 10 bytes, or
 * 12 when VIRTIO_NET_F_MRG_RXBUF is negotiated (the legacy rule: the header
 * grows by num_buffers only then). Transmit: the header says whether the
 * device must finish a checksum (NEEDS_CSUM, csum_start/csum_offset) and
 * whether the frame is a GSO super-frame to cut into gso_size segments.
 * Receive: the same header comes back, and with MRG_RXBUF a frame may fill
 * several posted buffers, num_buffers of them, used one after another. */
#ifndef BAREMETAL_NET_H
#define BAREMETAL_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio_pci.h"
#include "virtq.h"

#define VIRTIO_PCI_DEVICE_NET 0x1000
#define NET_RX 0 /* receiveq1 */
#define NET_TX 1 /* transmitq1 */

/* Feature bits (5.1.3). */
#define NET_F_CSUM 0
#define NET_F_GUEST_CSUM 1
#define NET_F_MAC 5
#define NET_F_GUEST_TSO4 7
#define NET_F_GUEST_TSO6 8
#define NET_F_GUEST_ECN 9
#define NET_F_GUEST_UFO 10
#define NET_F_HOST_TSO4 11
#define NET_F_HOST_TSO6 12
#define NET_F_HOST_ECN 13
#define NET_F_HOST_UFO 14
#define NET_F_MRG_RXBUF 15
#define NET_F_STATUS 16
#define NET_F_CTRL_VQ 17
#define NET_F_CTRL_RX 18
#define NET_F_CTRL_VLAN 19
#define NET_F_GUEST_ANNOUNCE 21
#define NET_F_MQ 22
#define NET_F_CTRL_MAC_ADDR 23
#define BIT(n) (1u << (n))

/* Device configuration: mac[6], then status u16 (5.1.4). */
#define NET_CONFIG_MAC 0
#define NET_CONFIG_STATUS 6
#define NET_S_LINK_UP 1

/* virtio_net_hdr (5.1.6). */
#define NET_HDR_F_NEEDS_CSUM 1
#define NET_HDR_F_DATA_VALID 2
#define NET_HDR_GSO_NONE 0
#define NET_HDR_GSO_TCPV4 1
#define NET_HDR_GSO_UDP 3
#define NET_HDR_GSO_TCPV6 4
#define NET_HDR_GSO_ECN 0x80
struct net_hdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;     /* bytes of headers (Ethernet to L4) a GSO frame repeats per segment */
    uint16_t gso_size;    /* payload bytes per segment */
    uint16_t csum_start;  /* checksum from here to the end of the frame... */
    uint16_t csum_offset; /* ...stored at csum_start + csum_offset */
    uint16_t num_buffers; /* only with MRG_RXBUF */
} __attribute__((packed));

#define ETH_HLEN 14
#define ETH_MAX_FRAME 1514 /* without FCS: what a 1500-byte MTU allows */
#define NET_MAX_GSO_FRAME (ETH_HLEN + 65535)

struct net {
    struct virtio_pci dev;
    struct virtq rx, tx;
    uint32_t features;
    unsigned hdr_len;     /* 10 or 12 */
    uint8_t mac[6];       /* from the configuration space */
    uint32_t rx_buf_size; /* of each posted receive buffer */
    uint8_t** rx_bufs;    /* [rx.size], allocated by net_post_rx */
    unsigned rx_count;
    struct virtq_desc* tx_tables; /* [tx.size][4]: indirect tables, one block per head */
};
extern struct net net_dev;

/* Finds the device (false: none) and registers the per-test cleanup that
 * resets it. */
bool net_find(void);
/* Reset, negotiate (device's & wanted), both queues, DRIVER_OK; reads the
 * MAC. False after fail(). */
bool net_start(uint32_t wanted);

/* Receive buffers: `count` buffers of `size` bytes each (header included),
 * each one writable descriptor, posted and kicked. */
bool net_post_rx(unsigned count, uint32_t size);
/* Hands a consumed buffer back to the device (not kicked: see net_rx_kick). */
void net_repost_rx(uint8_t* buf);
void net_rx_kick(void);

/* One received frame: waits up to timeout_ms for it. With MRG_RXBUF it
 * gathers num_buffers used buffers; the frame (without header) is copied
 * to `frame` (at most `max` bytes) and its header to *hdr. Buffers are
 * reposted when `repost`. Returns the frame's length, or -1 on timeout, or
 * -2 after fail() (a device that broke a receive rule). */
int net_receive(struct net_hdr* hdr, uint8_t* frame, uint32_t max, uint64_t timeout_ms, bool repost);

/* Transmit layouts: how the header and frame are cut into descriptors. */
enum net_layout {
    NET_LAYOUT_SPLIT,    /* header, frame: two descriptors (what legacy Linux does) */
    NET_LAYOUT_ONE,      /* header and frame in one descriptor */
    NET_LAYOUT_PIECES,   /* header, then the frame in three pieces */
    NET_LAYOUT_INDIRECT, /* header, frame through an indirect table */
};
/* Queues one frame (the header is net_dev.hdr_len bytes of *hdr) without
 * waiting; `token` comes back from net_tx_reclaim. False when the ring is
 * full. The frame must stay untouched until its chain is used. */
bool net_tx_add(const struct net_hdr* hdr, const void* frame, uint32_t len, enum net_layout layout, void* token);
void net_tx_kick(void);
/* Takes every used transmit chain back; returns how many. */
unsigned net_tx_reclaim(void);
/* Sends one frame and waits (polling) until the device returned it. */
bool net_transmit(const struct net_hdr* hdr, const void* frame, uint32_t len, enum net_layout layout);

#endif
