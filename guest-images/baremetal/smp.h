/* The second vCPU: started with INIT/SIPI from CPL3 (LAPIC ICR), brought to
 * long mode by ap_trampoline.S, then at CPL3 for good, where it counts and
 * does port I/O in a loop: proof that it keeps running while the boot vCPU
 * breaks a device. */
#ifndef BAREMETAL_SMP_H
#define BAREMETAL_SMP_H

#include <stdbool.h>
#include <stdint.h>

/* APIC IDs of the enabled processors in the MP table (0xf0000 area);
 * returns how many (at most `max`). */
unsigned mp_table_cpus(uint8_t* apic_ids, unsigned max);

/* Starts the vCPU with this APIC ID; true once it runs at CPL3. */
bool smp_start_ap(uint8_t apic_id);
bool smp_ap_running(void);
/* Whether the AP gets through two rounds of its loop (with port I/O)
 * within `us` microseconds, its port I/O never failing. */
bool smp_ap_progressing(uint64_t us);
uint64_t smp_ap_count(void);

#endif
