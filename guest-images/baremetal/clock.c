/* TSC clock; see clock.h. */
#include "clock.h"

#include "runtime.h"
#include "x86.h"

#define PIT_CHANNEL2 0x42
#define PIT_COMMAND 0x43
#define PORT_B 0x61 /* bit 0: channel 2 gate, bit 1: speaker, bit 5: channel 2 output */

static uint64_t hz;
static uint64_t start_tsc;
static const char* source = "none";

/* PIT channel 2 in mode 0 counts `count` ticks from the moment the high byte
 * of the count is written; its output goes high at terminal count, readable
 * as bit 5 of port 0x61. Every port access is a VM exit (tens of µs on a PVM
 * host) and the vCPU may be preempted anywhere, so only bounds are sound:
 *  - the count started between the rdtsc before and the one after the write;
 *  - terminal count came after the last poll that saw the output low, so
 *    after the rdtsc taken *before* that poll (not after it: the poll may
 *    have sampled the PIT long before it returned), and before the rdtsc
 *    after the poll that saw it high. */
bool pit_measure(unsigned ms, struct pit_measurement* m) {
    if (ms == 0) ms = 1;
    if (ms > 50) ms = 50; /* 16-bit count: at most ~54 ms */
    const uint32_t count = (uint32_t)((uint64_t)PIT_HZ * ms / 1000);
    m->pit_ticks = count;
    m->tsc_min = m->tsc_max = 0;
    outb(PORT_B, (uint8_t)((inb(PORT_B) & ~0x02) | 0x01)); /* gate on, speaker off */
    outb(PIT_COMMAND, 0xb0);          /* channel 2, lobyte/hibyte, mode 0 */
    outb(PIT_CHANNEL2, (uint8_t)count);
    const uint64_t start_before = rdtsc();
    outb(PIT_CHANNEL2, (uint8_t)(count >> 8)); /* counting starts; OUT2 low until terminal count */
    const uint64_t start_after = rdtsc();
    uint64_t before_poll = rdtsc();
    if (inb(PORT_B) & 0x20) return false; /* OUT2 high already: no PIT gate at port 0x61 (QEMU microvm) */
    uint64_t before_last_low_poll = before_poll, after_poll;
    for (uint64_t polls = 0;; ++polls) {
        before_poll = rdtsc();
        const bool done = inb(PORT_B) & 0x20;
        after_poll = rdtsc();
        if (done) break;
        before_last_low_poll = before_poll;
        if (polls > 100000000) return false; /* no PIT */
    }
    m->tsc_min = before_last_low_poll > start_after ? before_last_low_poll - start_after : 0;
    m->tsc_max = after_poll - start_before;
    return true;
}

uint64_t tsc_calibrate_pit(void) {
    /* 10 ms each: the port windows (a few exits) stay well under 1% of it
     * unless the vCPU is preempted, and then that measurement is wide. */
    struct pit_measurement best = {0, 0, 0};
    for (int attempt = 0; attempt < 12; ++attempt) {
        struct pit_measurement m;
        if (!pit_measure(10, &m)) return 0;
        if (best.pit_ticks == 0 || m.tsc_max - m.tsc_min < best.tsc_max - best.tsc_min) best = m;
        if ((best.tsc_max - best.tsc_min) * 500 < best.tsc_max) break; /* within 0.2% */
    }
    return (best.tsc_min + best.tsc_max) / 2 * PIT_HZ / best.pit_ticks;
}

/* The hypervisor timing leaf first: it is the VMM's own word for this
 * guest's TSC (KVM may scale it). Then the crystal ratio (0x15) and the
 * nominal base frequency (0x16, whole MHz only). */
uint64_t tsc_hz_from_cpuid(const char** leaf) {
    uint32_t regs[4];
    cpuid(0x40000000, 0, regs);
    if (regs[0] >= 0x40000010 && regs[0] < 0x40000100) {
        cpuid(0x40000010, 0, regs);
        if (regs[0]) {
            if (leaf) *leaf = "CPUID 0x40000010";
            return (uint64_t)regs[0] * 1000ull;
        }
    }
    cpuid(0, 0, regs);
    const uint32_t max_leaf = regs[0];
    if (max_leaf >= 0x15) {
        cpuid(0x15, 0, regs); /* TSC/crystal ratio EBX/EAX, crystal Hz in ECX */
        if (regs[0] && regs[1] && regs[2]) {
            if (leaf) *leaf = "CPUID 0x15";
            return (uint64_t)regs[2] * regs[1] / regs[0];
        }
    }
    if (max_leaf >= 0x16) {
        cpuid(0x16, 0, regs);
        if (regs[0] & 0xffff) {
            if (leaf) *leaf = "CPUID 0x16";
            return (uint64_t)(regs[0] & 0xffff) * 1000000ull;
        }
    }
    return 0;
}

void clock_init(void) {
    hz = tsc_hz_from_cpuid(&source);
    if (hz == 0) {
        hz = tsc_calibrate_pit();
        source = "PIT channel 2";
    }
    if (hz == 0) {
        hz = 2000000000ull; /* a guess, so timeouts still end */
        source = "none (assumed 2 GHz)";
    }
    start_tsc = rdtsc();
}

const char* tsc_source(void) { return source; }

uint64_t tsc_hz(void) { return hz; }

uint64_t now_ns(void) {
    const uint64_t ticks = rdtsc() - start_tsc;
    /* ticks * 1e9 / hz without overflowing for the first ~hours */
    return ticks / hz * 1000000000ull + ticks % hz * 1000000000ull / hz;
}

void delay_us(uint64_t us) {
    const uint64_t end = rdtsc() + us * hz / 1000000;
    while ((int64_t)(rdtsc() - end) < 0) cpu_relax();
}
