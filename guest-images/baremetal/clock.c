/* TSC clock; see clock.h. */
#include "clock.h"

#include "runtime.h"
#include "x86.h"

#define PIT_HZ 1193182u
#define PIT_CHANNEL2 0x42
#define PIT_COMMAND 0x43
#define PORT_B 0x61 /* bit 0: channel 2 gate, bit 1: speaker, bit 5: channel 2 output */

static uint64_t hz;
static uint64_t start_tsc;
static const char* source = "none";

/* One measurement: the TSC ticks while PIT channel 2 counts `count` ticks
 * in mode 0 (its output goes high at terminal count, readable as bit 5 of
 * port 0x61). Each port access is a VM exit and the vCPU may be preempted
 * between any two instructions, so the start and the end are each known
 * only within a window: returns the window midpoints' difference, and the
 * two windows' total width in *uncertainty. */
static uint64_t measure(uint32_t count, uint64_t* uncertainty) {
    outb(PORT_B, (uint8_t)((inb(PORT_B) & ~0x02) | 0x01)); /* gate on, speaker off */
    outb(PIT_COMMAND, 0xb0);          /* channel 2, lobyte/hibyte, mode 0 */
    outb(PIT_CHANNEL2, (uint8_t)count);
    const uint64_t start_before = rdtsc();
    outb(PIT_CHANNEL2, (uint8_t)(count >> 8)); /* counting starts; OUT2 low until terminal count */
    const uint64_t start_after = rdtsc();
    if (inb(PORT_B) & 0x20) return 0; /* OUT2 high already: no PIT gate at port 0x61 (QEMU microvm) */
    uint64_t end_before = start_after, end_after = start_after;
    for (uint64_t polls = 0;; ++polls) {
        end_before = end_after;
        const bool done = inb(PORT_B) & 0x20;
        end_after = rdtsc();
        if (done) break;
        if (polls > 100000000) return 0; /* no PIT */
    }
    *uncertainty = (start_after - start_before) + (end_after - end_before);
    return (end_before + end_after) / 2 - (start_before + start_after) / 2;
}

uint64_t tsc_calibrate_pit(unsigned ms) {
    if (ms == 0 || ms > 50) ms = 50; /* 16-bit count: at most ~54 ms */
    const uint32_t count = (uint32_t)((uint64_t)PIT_HZ * ms / 1000);
    /* Nine short measurements; the smallest wins. On the nested PVM
     * development host under load, the TSC seen at CPL3 runs ahead of the
     * PIT (which follows the host's clock) for stretches of time -- some
     * measurements come out 1.2 to 3 times too long, never too short -- so
     * the median is not safe but the minimum is. A vCPU preempted at the
     * start or the end only widens that measurement's windows, and
     * measurements with windows over 2% are not used. */
    uint64_t best = 0, fallback = 0;
    for (int attempt = 0; attempt < 9; ++attempt) {
        uint64_t uncertainty = 0;
        const uint64_t ticks = measure(count, &uncertainty);
        if (ticks == 0) return 0;
        if (fallback == 0 || ticks < fallback) fallback = ticks;
        if (uncertainty * 50 < ticks && (best == 0 || ticks < best)) best = ticks;
    }
    return (best ? best : fallback) * PIT_HZ / count;
}

/* CPUID's idea of the TSC frequency: leaf 0x15 (crystal ratio), else
 * 0x16 (base MHz), else the hypervisor leaf 0x40000010 (kHz). 0: none. */
uint64_t tsc_hz_from_cpuid(void) {
    uint32_t regs[4];
    cpuid(0, 0, regs);
    const uint32_t max_leaf = regs[0];
    if (max_leaf >= 0x15) {
        cpuid(0x15, 0, regs); /* TSC/crystal ratio EBX/EAX, crystal Hz in ECX */
        if (regs[0] && regs[1] && regs[2]) return (uint64_t)regs[2] * regs[1] / regs[0];
    }
    if (max_leaf >= 0x16) {
        cpuid(0x16, 0, regs);
        if (regs[0] & 0xffff) return (uint64_t)(regs[0] & 0xffff) * 1000000ull;
    }
    cpuid(0x40000000, 0, regs);
    if (regs[0] >= 0x40000010 && regs[0] < 0x40000100) {
        cpuid(0x40000010, 0, regs);
        if (regs[0]) return (uint64_t)regs[0] * 1000ull;
    }
    return 0;
}

void clock_init(void) {
    hz = tsc_calibrate_pit(2);
    source = "PIT channel 2";
    if (hz == 0) {
        hz = tsc_hz_from_cpuid();
        source = "CPUID";
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
