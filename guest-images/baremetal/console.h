/* The guest's virtio-console driver state, shared by the conformance tests
 * (tests_console.c) and the misbehaving-driver tests (tests_rules.c). */
#ifndef BAREMETAL_CONSOLE_H
#define BAREMETAL_CONSOLE_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio_pci.h"
#include "virtq.h"

/* virtio 1.2 section 5.3 */
#define CONSOLE_RX 0 /* receiveq of port 0 */
#define CONSOLE_TX 1 /* transmitq of port 0 */
#define CONSOLE_F_SIZE 0
#define CONSOLE_F_MULTIPORT 1
#define CONSOLE_F_EMERG_WRITE 2
#define CONSOLE_CONFIG_SIZE 12 /* cols u16, rows u16, max_nr_ports u32, emerg_wr u32 */
#define CONSOLE_CONFIG_EMERG_WR 8

struct console {
    struct virtio_pci dev;
    struct virtq rx, tx;
    uint32_t features;
    uint8_t vector; /* 0 while no interrupt handler is installed */
    volatile unsigned interrupts, queue_interrupts, config_interrupts, spurious_interrupts;
};
extern struct console console_dev;

/* Finds the device (false: none) and registers the per-test cleanup that
 * resets it. */
bool console_find(void);
/* Reset, ACKNOWLEDGE, DRIVER, features (device's & wanted), both queues,
 * DRIVER_OK. False after fail(). */
bool console_start(uint32_t wanted);
/* Transmits the buffers as one chain (or through an indirect table) and
 * waits (polling) for the device to return it. False after fail(). */
bool console_transmit(const struct virtq_buf* bufs, unsigned n, bool indirect);
bool console_print(const char* text);
/* A transmit that prints nothing on minikvm (see tests_console.c). */
struct virtq_buf console_filler(void);
bool console_send_filler(void);
bool console_wait_used(struct virtq* vq, uint64_t timeout_ms);
/* Routes the device's INTx through the IOAPIC to a handler that reads the
 * ISR and counts; unmasks interrupts (TPR 0). */
void console_enable_irq(void);
/* Masks the IOAPIC input, removes the handler, TPR back to "masked". */
void console_cleanup_irq(void);
bool console_wait_interrupts(volatile unsigned* counter, unsigned want, uint64_t timeout_ms);

#endif
