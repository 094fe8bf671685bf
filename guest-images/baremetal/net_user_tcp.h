/* One TCP connection from the bare-metal guest to the host of a user-mode
 * network (10.0.2.2, i.e. the host's loopback), just enough of RFC 793 to
 * move a byte stream each way for the benchmarks (bench_net_user.c):
 * the three-way handshake with an MSS option, a sender bounded by the
 * peer's window (no window scaling, no congestion control of its own: the
 * user-mode stack's socket buffers are the bottleneck) that goes back to
 * the first unacknowledged byte when no ACK came for a while, a receiver
 * that takes in-order data only (anything else earns a duplicate ACK, and
 * the stack retransmits), and FIN both ways.
 *
 * Frames use what the card offers, as a Linux guest would: with CSUM the
 * device finishes each checksum, with HOST_TSO4 as well the sender hands
 * over up to 64 KiB per frame for the device to cut; without them every
 * segment is MSS-sized and carries its own checksum (also with the
 * command-line word net-user-tcp-offloads=0).
 *
 * The stream's byte at offset o is tcp_stream_byte(o) both ways; each side
 * checks what it receives. */
#ifndef BAREMETAL_NET_USER_TCP_H
#define BAREMETAL_NET_USER_TCP_H

#include <stdbool.h>
#include <stdint.h>

static inline uint8_t tcp_stream_byte(uint64_t offset) { return (uint8_t)(offset * 7 + 3); }

struct tcp_conn {
    uint16_t local_port, remote_port;
    uint32_t iss;           /* our initial sequence number */
    uint32_t snd_una;       /* oldest byte not acknowledged */
    uint32_t snd_nxt;       /* next byte to send */
    uint32_t peer_window;   /* bytes past snd_una the peer takes */
    uint32_t rcv_nxt;       /* next byte expected */
    uint32_t mss;           /* payload bytes per segment */
    bool tso, csum;         /* what the card offered */
    bool fin_received;
    uint64_t received;      /* in-order payload bytes taken */
    uint64_t retransmits;   /* times the sender went back */
    uint64_t dup_acks_sent; /* out-of-order segments answered */
};

/* Brings the card up (net_user_bring_up) and connects to 10.0.2.2:port.
 * False after fail(). */
bool tcp_connect(struct tcp_conn* c, uint16_t port, uint64_t timeout_ms);
/* Sends `bytes` of the stream and waits until all are acknowledged.
 * *first and *last: the TSC when the first byte went out and when the last
 * was acknowledged. False after fail(). */
bool tcp_send_stream(struct tcp_conn* c, uint64_t bytes, uint64_t* first, uint64_t* last);
/* Takes the stream until the peer's FIN, checking every byte. *first and
 * *last: the TSC at the first and the last data segment. False after
 * fail(). */
bool tcp_receive_stream(struct tcp_conn* c, uint64_t* first, uint64_t* last);
/* Sends our FIN and waits for the peer's (if not already in). */
bool tcp_close(struct tcp_conn* c, uint64_t timeout_ms);

#endif
