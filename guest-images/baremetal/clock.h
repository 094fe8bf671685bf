/* A TSC clock at CPL3 (rdtsc works because CR4.TSD is clear), calibrated
 * against PIT channel 2, which both minikvm (KVM's in-kernel PIT, with its
 * port-0x61 gate) and QEMU provide. */
#ifndef BAREMETAL_CLOCK_H
#define BAREMETAL_CLOCK_H

#include <stdint.h>

/* TSC ticks per second: the smallest of nine measurements over `ms`
 * milliseconds of PIT channel 2 each (at most 50; see clock.c for why the
 * smallest); 0 when there is no PIT gate at port 0x61. */
uint64_t tsc_calibrate_pit(unsigned ms);
uint64_t tsc_hz_from_cpuid(void);
/* Calibrates: PIT, else CPUID, else a guess; tsc_source() says which. */
void clock_init(void);
const char* tsc_source(void);
uint64_t tsc_hz(void);
uint64_t now_ns(void);   /* since clock_init() */
void delay_us(uint64_t us);

#endif
