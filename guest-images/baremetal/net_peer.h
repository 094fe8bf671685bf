/* The network tests' host-side peer (tests/guest/net-peer) as the guest
 * sees it, and the frames both sides build.
 *
 * The peer sits on a second tap bridged to the VMM's tap, inside the test's
 * network namespace. The guest drives it with control frames (EtherType
 * PEER_ETHERTYPE_CONTROL, payload "MKVM" + "id=N REQUEST ARGS") and it
 * answers "MKVM" + "id=N ok ..." or "id=N fail WHY", after it did the work:
 * injecting frames into the guest, or checking the frames it captured from
 * the guest byte for byte. Data frames (PEER_ETHERTYPE_DATA) carry a
 * little-endian u32 sequence number and then pattern bytes derived from it;
 * TCP and UDP frames go between 10.199.0.2 (guest) and 10.199.0.1 (peer),
 * addresses that exist nowhere: nothing leaves the namespace's bridge.
 * The peer implements the same generators in Python. */
#ifndef BAREMETAL_NET_PEER_H
#define BAREMETAL_NET_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PEER_ETHERTYPE_CONTROL 0x88b5 /* IEEE 802 local experimental EtherType 1 */
#define PEER_ETHERTYPE_DATA 0x88b6    /* ... and 2 */
#define PEER_MAGIC "MKVM"
#define TCP_HEADERS (14 + 20 + 20) /* Ethernet, IPv4, TCP without options */
#define UDP_HEADERS (14 + 20 + 8)
#define TCP_CSUM_OFFSET 16
#define UDP_CSUM_OFFSET 6
#define L4_START (14 + 20)
#define GSO_MSS 1448
/* The largest TCP payload one IPv4 packet can carry: 65535 - 40. */
#define TCP_MAX_PAYLOAD (65535 - 40)

extern const uint8_t peer_mac[6];

/* Pattern byte `i` of the payload with seed `seed`. */
static inline uint8_t peer_pattern(uint32_t seed, uint32_t i) {
    return (uint8_t)(((i * 131u + seed * 7u + (i >> 8)) ^ (seed >> 3)) & 0xff);
}

/* Frame builders; return the frame's length. */
uint32_t peer_data_frame(uint8_t* frame, uint32_t len, uint32_t seq);
/* IPv4/TCP (or UDP) guest -> peer with `payload` pattern bytes of `seed`.
 * partial: the L4 checksum field holds only the pseudo-header sum, for the
 * device to finish (NEEDS_CSUM); otherwise the full checksum. */
uint32_t peer_tcp_frame(uint8_t* frame, uint32_t payload, uint32_t seed, bool partial);
uint32_t peer_udp_frame(uint8_t* frame, uint32_t payload, uint32_t seed, bool partial);

/* Internet checksum (RFC 1071): the one's complement sum of `len` bytes,
 * and the 16-bit result; 0 over data that includes a correct checksum. */
uint32_t csum_add(uint32_t sum, const uint8_t* data, uint32_t len);
uint16_t csum_fold(uint32_t sum);
/* Whether an IPv4 TCP/UDP frame has correct IPv4 and L4 checksums. */
bool peer_l4_checksum_ok(const uint8_t* frame, uint32_t len);

/* Control: sends "id=N " + the request; returns N. */
unsigned peer_send(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/* Whether this received frame is the peer's answer to request `id`; if so
 * its text after "id=N " goes to reply. */
bool peer_is_reply(const uint8_t* frame, int len, unsigned id, char* reply, size_t size);
bool peer_is_control(const uint8_t* frame, int len);
/* Request and wait for the answer (other frames are dropped); false after
 * fail() when none came in timeout_ms or it was not "ok". */
bool peer_request(char* reply, size_t size, uint64_t timeout_ms, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Asks until the peer answers (it may still be starting): up to 5 s. */
bool peer_hello(void);

#endif
