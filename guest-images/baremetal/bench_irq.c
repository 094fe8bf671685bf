/* Interrupt-driven completion for the benchmarks; see bench_irq.h. */
#include "bench_irq.h"

#include "apic.h"
#include "clock.h"
#include "cpu.h"
#include "msix.h"
#include "runtime.h"
#include "x86.h"

#define VECTOR_BENCH 0xb0
#define ENTRY_QUEUES 1 /* table entry 0 stays the config vector's, unused here */

struct bench_irq bench_irq;
static struct virtio_pci* device;
static struct msix msix;
static uint8_t intx_vector;

static void on_msix(struct interrupt_frame* f) {
    (void)f;
    bench_irq.tsc = rdtsc();
    bench_irq.count++;
    lapic_eoi();
}

static void on_intx(struct interrupt_frame* f) {
    (void)f;
    bench_irq.tsc = rdtsc();
    (void)vp_isr(device); /* read-and-clear: lowers the line */
    bench_irq.count++;
    lapic_eoi();
}

bool bench_irq_start(struct virtio_pci* d, const uint16_t* queues, unsigned n) {
    memset(&bench_irq, 0, sizeof bench_irq);
    device = d;
    intx_vector = 0;
    if (msix_find(d->pci, &msix) && msix.vectors > ENTRY_QUEUES) {
        bench_irq.msix = true;
        set_interrupt_handler(VECTOR_BENCH, on_msix);
        msix_program(&msix, ENTRY_QUEUES, VECTOR_BENCH);
        msix_set_masked(&msix, ENTRY_QUEUES, false);
        vp_set_msix(d, &msix, true);
        vp_set_config_vector(d, VIRTIO_MSI_NO_VECTOR);
        for (unsigned i = 0; i < n; ++i)
            CHECK(vp_set_queue_vector(d, queues[i], ENTRY_QUEUES) == ENTRY_QUEUES, "queue %u: vector refused",
                  queues[i]);
    } else {
        memset(&msix, 0, sizeof msix);
        intx_vector = vp_intx_route(d, on_intx);
    }
    irq_enable();
    return true;
}

bool bench_irq_wait(uint64_t seen, uint64_t timeout_ms) {
    const uint64_t deadline = rdtsc() + timeout_ms * (tsc_hz() / 1000);
    while (bench_irq.count == seen)
        if (rdtsc() > deadline) return false;
    return true;
}

void bench_irq_stop(void) {
    irq_disable();
    if (bench_irq.msix) {
        msix_set_masked(&msix, ENTRY_QUEUES, true);
        vp_set_msix(device, &msix, false);
        set_interrupt_handler(VECTOR_BENCH, 0);
    } else if (intx_vector) {
        vp_intx_unroute(device, intx_vector);
    }
}

const char* bench_irq_mode(void) { return bench_irq.msix ? "msix" : "intx"; }
