/* The local APIC (xAPIC MMIO at 0xfee00000) and the IOAPIC (0xfec00000),
 * programmed from CPL3 through user-accessible MMIO mappings. */
#ifndef BAREMETAL_APIC_H
#define BAREMETAL_APIC_H

#include <stdbool.h>
#include <stdint.h>

#define LAPIC_BASE 0xfee00000u
#define IOAPIC_BASE 0xfec00000u

/* Software-enables the LAPIC (spurious vector 0xff), TPR 0, and masks the
 * two 8259 PICs so nothing arrives as ExtINT through LINT0. */
void lapic_init(void);
uint32_t lapic_id(void);
/* Interrupt masking at CPL3. cli/sti fault at CPL3 on PVM (see boot.S), so
 * RFLAGS.IF stays set and the LAPIC's task priority register does the job:
 * TPR 0xf0 blocks every vector (priority class <= 15), TPR 0 none. NMIs and
 * exceptions are not affected. */
void irq_disable(void);
void irq_enable(void);
void lapic_eoi(void);
/* One-shot timer: `count` ticks of the bus clock divided by 16. */
void lapic_timer_oneshot(uint8_t vector, uint32_t count);
void lapic_timer_stop(void);
uint32_t lapic_timer_current(void);

/* Inter-processor interrupts through the ICR: waits for delivery. */
#define LAPIC_ICR_INIT 0x4500    /* INIT, level assert */
#define LAPIC_ICR_STARTUP 0x4600 /* SIPI; | the start page number */
void lapic_send_ipi(uint8_t apic_id, uint32_t icr_low);

/* IOAPIC: number of redirection entries, and programming one. */
unsigned ioapic_pins(void);
enum ioapic_trigger { IOAPIC_EDGE_HIGH, IOAPIC_LEVEL_LOW, IOAPIC_LEVEL_HIGH };
/* Routes `pin` to `vector` on this CPU (physical destination = lapic_id),
 * fixed delivery, unmasked. */
void ioapic_route(unsigned pin, uint8_t vector, enum ioapic_trigger trigger);
void ioapic_mask(unsigned pin);
uint64_t ioapic_read_entry(unsigned pin);
/* Remote IRR (bit 14) of a level-triggered entry: set while the interrupt
 * is in service, cleared by the EOI. */
bool ioapic_remote_irr(unsigned pin);

#endif
