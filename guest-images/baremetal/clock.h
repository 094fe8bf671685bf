/* A TSC clock at CPL3 (rdtsc works because CR4.TSD is clear). Its rate
 * comes from the VMM through CPUID where the VMM says it (minikvm fills the
 * hypervisor timing leaf 0x40000010 from KVM_GET_TSC_KHZ), else from PIT
 * channel 2, which both minikvm (KVM's in-kernel PIT, with its port-0x61
 * gate) and QEMU provide. */
#ifndef BAREMETAL_CLOCK_H
#define BAREMETAL_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

/* Bounds on the TSC ticks that passed while PIT channel 2 counted `pit_ticks`
 * (each end is known only within the window of the port accesses around
 * it, and the vCPU may be preempted anywhere). 0/0 when there is no PIT
 * gate at port 0x61. */
struct pit_measurement {
    uint32_t pit_ticks;
    uint64_t tsc_min, tsc_max;
};
bool pit_measure(unsigned ms, struct pit_measurement* m); /* ms: 1 to 50 */
#define PIT_HZ 1193182u

/* The TSC rate the VMM states in CPUID (0: none); *leaf names the leaf. */
uint64_t tsc_hz_from_cpuid(const char** leaf);
/* TSC ticks per second from PIT channel 2: the midpoint of the tightest of
 * several measurements; 0 when there is no PIT gate. */
uint64_t tsc_calibrate_pit(void);
/* CPUID, else the PIT, else a guess; tsc_source() says which. */
void clock_init(void);
const char* tsc_source(void);
uint64_t tsc_hz(void);
uint64_t now_ns(void);   /* since clock_init() */
void delay_us(uint64_t us);

#endif
