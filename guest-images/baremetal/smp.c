/* The second vCPU; see smp.h. */
#include "smp.h"

#include "apic.h"
#include "clock.h"
#include "runtime.h"
#include "x86.h"

extern char ap_trampoline_start[], ap_trampoline_end[];
extern uint8_t gdt[];

static volatile bool ap_alive;
static volatile uint64_t ap_counter;
static volatile uint64_t ap_io_failures;
static volatile uint16_t ap_cs;

/* The AP's whole life at CPL3 (entered by iretq from ap_long_mode). */
__attribute__((noreturn)) void ap_main(void);
void ap_main(void) {
    ap_cs = read_cs();
    ap_alive = true;
    for (;;) {
        ap_counter++;
        /* Port I/O from this vCPU too (an exit each): the scratch register
         * of COM1 is harmless to read. */
        if ((ap_counter & 1023) == 0 && inb(COM1_PORT + 5) == 0xff) ap_io_failures++;
        cpu_relax();
    }
}

unsigned mp_table_cpus(uint8_t* apic_ids, unsigned max) {
    /* The floating pointer "_MP_" sits on a 16-byte boundary in the BIOS
     * area; it points at the "PCMP" configuration table (MP spec 1.4). */
    for (uint64_t p = 0xf0000; p < 0x100000; p += 16) {
        const uint8_t* fp = (const uint8_t*)p;
        if (fp[0] != '_' || fp[1] != 'M' || fp[2] != 'P' || fp[3] != '_') continue;
        const uint32_t table = *(const uint32_t*)(fp + 4);
        const uint8_t* t = (const uint8_t*)(uintptr_t)table;
        if (!table || t[0] != 'P' || t[1] != 'C' || t[2] != 'M' || t[3] != 'P') return 0;
        const uint16_t entries = *(const uint16_t*)(t + 34);
        const uint8_t* e = t + 44;
        unsigned n = 0;
        for (uint16_t i = 0; i < entries; ++i) {
            if (e[0] == 0) { /* processor: 20 bytes; APIC ID, version, flags (bit 0 enabled) */
                if ((e[3] & 1) && n < max) apic_ids[n++] = e[1];
                e += 20;
            } else {
                e += 8;
            }
        }
        return n;
    }
    return 0;
}

bool smp_start_ap(uint8_t apic_id) {
    if (ap_alive) return true;
    /* The trampoline, where SIPI vector 0x10 starts the vCPU. */
    memcpy((void*)(uintptr_t)AP_TRAMPOLINE, ap_trampoline_start, (size_t)(ap_trampoline_end - ap_trampoline_start));
    /* Its own TSS descriptor: a copy of the boot vCPU's (whose busy bit ltr
     * set), marked available. */
    memcpy(gdt + AP_TSS_SEL, gdt + TSS_SEL, 16);
    gdt[AP_TSS_SEL + 5] = 0x89;
    /* INIT, 10 ms, then SIPI (twice if needed), as the MP spec's
     * universal start-up algorithm has it. */
    lapic_send_ipi(apic_id, LAPIC_ICR_INIT);
    delay_us(10000);
    for (int attempt = 0; attempt < 2 && !ap_alive; ++attempt) {
        lapic_send_ipi(apic_id, LAPIC_ICR_STARTUP | (AP_TRAMPOLINE >> 12));
        const uint64_t deadline = now_ns() + 1000000000ull; /* its CPL0 part is emulated on PVM */
        while (!ap_alive && now_ns() < deadline) cpu_relax();
    }
    return ap_alive && ap_cs == USER_CS;
}

bool smp_ap_running(void) { return ap_alive; }
uint64_t smp_ap_count(void) { return ap_counter; }

bool smp_ap_progressing(uint64_t us) {
    if (!ap_alive) return false;
    /* Its thread shares the host's CPUs with ours and others: give it a
     * while to be scheduled, and look for at least one more round of its
     * loop with port I/O in it. */
    const uint64_t before = ap_counter, failures = ap_io_failures;
    const uint64_t deadline = now_ns() + us * 1000;
    while (ap_counter < before + 2048 && now_ns() < deadline) cpu_relax();
    return ap_counter >= before + 2048 && ap_io_failures == failures;
}
