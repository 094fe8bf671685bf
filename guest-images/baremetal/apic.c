/* LAPIC and IOAPIC; see apic.h. Register offsets: Intel SDM vol. 3 table
 * 11-1 (LAPIC) and the 82093AA IOAPIC datasheet. */
#include "apic.h"

#include "cpu.h"
#include "x86.h"

#define LAPIC_ID 0x20
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_SVR_ENABLE 0x100
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_LVT_MASKED 0x10000
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3e0

#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define LAPIC_ICR_PENDING 0x1000

#define IOAPIC_SELECT 0x00
#define IOAPIC_WINDOW 0x10
#define IOAPIC_VERSION 0x01
#define IOAPIC_REDIRECTION 0x10 /* entry n: registers 0x10 + 2n (low), 0x11 + 2n (high) */

static uint32_t lapic_read(uint32_t reg) { return mmio_read32(LAPIC_BASE + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }

void lapic_init(void) {
    outb(0x21, 0xff); /* 8259 master: mask all (boot.S did already) */
    outb(0xa1, 0xff); /* 8259 slave: mask all */
    lapic_write(LAPIC_TPR, 0xf0); /* irq_disable() */
    lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | VECTOR_SPURIOUS);
}

void irq_disable(void) {
    barrier();
    lapic_write(LAPIC_TPR, 0xf0);
}

void irq_enable(void) {
    lapic_write(LAPIC_TPR, 0);
    barrier();
}

uint32_t lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }
void lapic_eoi(void) { lapic_write(LAPIC_EOI, 0); }

void lapic_timer_oneshot(uint8_t vector, uint32_t count) {
    lapic_write(LAPIC_TIMER_DIVIDE, 0x3); /* divide by 16 */
    lapic_write(LAPIC_LVT_TIMER, vector); /* one-shot, unmasked */
    lapic_write(LAPIC_TIMER_INITIAL, count);
}

void lapic_timer_stop(void) {
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED);
    lapic_write(LAPIC_TIMER_INITIAL, 0);
}

uint32_t lapic_timer_current(void) { return lapic_read(LAPIC_TIMER_CURRENT); }

void lapic_send_ipi(uint8_t apic_id, uint32_t icr_low) {
    lapic_write(LAPIC_ICR_HIGH, (uint32_t)apic_id << 24);
    lapic_write(LAPIC_ICR_LOW, icr_low); /* writing the low half sends it */
    for (int i = 0; i < 100000 && (lapic_read(LAPIC_ICR_LOW) & LAPIC_ICR_PENDING); ++i) cpu_relax();
}

static uint32_t ioapic_read(uint32_t reg) {
    mmio_write32(IOAPIC_BASE + IOAPIC_SELECT, reg);
    return mmio_read32(IOAPIC_BASE + IOAPIC_WINDOW);
}

static void ioapic_write(uint32_t reg, uint32_t v) {
    mmio_write32(IOAPIC_BASE + IOAPIC_SELECT, reg);
    mmio_write32(IOAPIC_BASE + IOAPIC_WINDOW, v);
}

unsigned ioapic_pins(void) { return ((ioapic_read(IOAPIC_VERSION) >> 16) & 0xff) + 1; }

void ioapic_route(unsigned pin, uint8_t vector, enum ioapic_trigger trigger) {
    uint32_t low = vector; /* fixed delivery, physical destination */
    if (trigger != IOAPIC_EDGE_HIGH) low |= 1u << 15; /* level triggered */
    if (trigger == IOAPIC_LEVEL_LOW) low |= 1u << 13; /* active low */
    /* High word first, masked low word last, so the entry never fires
     * half-written. */
    ioapic_write(IOAPIC_REDIRECTION + 2 * pin, low | (1u << 16));
    ioapic_write(IOAPIC_REDIRECTION + 2 * pin + 1, lapic_id() << 24);
    ioapic_write(IOAPIC_REDIRECTION + 2 * pin, low);
}

void ioapic_mask(unsigned pin) {
    uint32_t low = ioapic_read(IOAPIC_REDIRECTION + 2 * pin);
    ioapic_write(IOAPIC_REDIRECTION + 2 * pin, low | (1u << 16));
}

uint64_t ioapic_read_entry(unsigned pin) {
    return ioapic_read(IOAPIC_REDIRECTION + 2 * pin) | (uint64_t)ioapic_read(IOAPIC_REDIRECTION + 2 * pin + 1) << 32;
}

bool ioapic_remote_irr(unsigned pin) { return (ioapic_read(IOAPIC_REDIRECTION + 2 * pin) >> 14) & 1; }
