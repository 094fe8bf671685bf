/* Interrupt-driven completion for the benchmarks: the guest waits for the
 * device's interrupt instead of polling its used ring. MSI-X when the
 * device has it (one table entry for the measured queues, the way Linux
 * uses it), INTx through the IOAPIC otherwise (minikvm --msix off); the
 * handler stamps the TSC on entry, so notify-to-handler latency can be
 * taken, and for INTx reads the ISR (which lowers the line) as a legacy
 * driver does. One user at a time. */
#ifndef BAREMETAL_BENCH_IRQ_H
#define BAREMETAL_BENCH_IRQ_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio_pci.h"

struct bench_irq {
    volatile uint64_t count; /* interrupts taken */
    volatile uint64_t tsc;   /* TSC at the last handler's entry */
    bool msix;
};
extern struct bench_irq bench_irq;

/* After DRIVER_OK: routes the interrupts of `queues` (n of them) to the
 * handler and enables them (TPR 0). False after fail(). */
bool bench_irq_start(struct virtio_pci* d, const uint16_t* queues, unsigned n);
/* Waits until bench_irq.count differs from `seen`; false after `timeout_ms`. */
bool bench_irq_wait(uint64_t seen, uint64_t timeout_ms);
/* Undoes bench_irq_start (before the device is reset). */
void bench_irq_stop(void);
const char* bench_irq_mode(void);

#endif
