/* The guest's side of minikvm's --net user (libslirp): the addresses, the
 * frame builders and the bring-up shared by its tests (tests_net_user.c)
 * and benchmarks (bench_net_user.c). The host is 10.0.2.2 (its MAC learnt
 * by ARP), the guest 10.0.2.15. */
#ifndef BAREMETAL_NET_USER_H
#define BAREMETAL_NET_USER_H

#include <stdbool.h>
#include <stdint.h>

#define NET_USER_REPLY_TIMEOUT_MS 3000

extern const uint8_t net_user_guest_ip[4], net_user_host_ip[4], net_user_broadcast[6];
extern uint8_t net_user_host_mac[6];

void net_user_put16(uint8_t* p, uint16_t v);
void net_user_put32(uint8_t* p, uint32_t v);
uint16_t net_user_get16(const uint8_t* p);
uint32_t net_user_get32(const uint8_t* p);
/* Ethernet header from our MAC to `to`. */
void net_user_ethernet(uint8_t* f, const uint8_t* to, uint16_t type);
/* IPv4 header at f + 14, with its checksum. */
void net_user_ipv4(uint8_t* f, uint8_t protocol, uint32_t l4_len, const uint8_t* from, const uint8_t* to);
/* The pseudo-header sum of the IPv4 packet at f + 14. */
uint32_t net_user_pseudo(const uint8_t* f, uint32_t l4_len);
/* One frame with an empty header, waited for until the device used it. */
bool net_user_send(const uint8_t* frame, uint32_t len);
/* Waits for a frame `match` accepts (others are dropped); its length or -1. */
int net_user_wait_for(uint8_t* frame, bool (*match)(const uint8_t*, int), uint64_t timeout_ms);
/* A receive buffer for a whole GSO frame. */
uint8_t* net_user_rx_frame(void);
/* Starts the card (MAC, CSUM, HOST_TSO4, STATUS), posts receive buffers and
 * learns the host's MAC by ARP. False after fail(). */
bool net_user_bring_up(void);
/* An ICMP echo request to the host: id 0x6b76, `seq`, 56 pattern bytes. */
uint32_t net_user_echo_request(uint8_t* f, uint16_t seq);
bool net_user_is_echo_reply(const uint8_t* f, int len);

#endif
