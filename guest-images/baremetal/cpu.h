/* Interrupt and exception handling at CPL3: the IDT, the frame the stubs in
 * isr.S build, and per-vector handlers. */
#ifndef BAREMETAL_CPU_H
#define BAREMETAL_CPU_H

#include <stdbool.h>
#include <stdint.h>

/* What isr.S pushed (lowest address first) and the CPU's frame above it. */
struct interrupt_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector;
    uint64_t error_code; /* 0 for vectors without one */
    uint64_t rip, cs, rflags, rsp, ss;
};

typedef void (*interrupt_handler)(struct interrupt_frame* frame);

/* Fills all 256 gates, at CPL3, before anything can interrupt: selector
 * USER_CS (handlers run at CPL3), DPL 3 (so `int n` is allowed from CPL3
 * where the host delivers it), NMI and double fault on IST1.
 *
 * Trap gates (type 0xf), not interrupt gates: an interrupt gate clears IF
 * on delivery and only iretq sets it again. On PVM the handler's iretq runs
 * natively at CPL3, where the hypervisor does not see it, so after the
 * first interrupt through an interrupt gate the guest's virtual IF stays
 * clear and no further interrupt is ever delivered. With trap gates IF
 * stays set; the LAPIC keeps a vector from nesting into itself until its
 * EOI (in-service priority), and irq_disable() (TPR) masks the rest. The
 * price: a handler may be interrupted by a higher-priority vector, and
 * between its EOI and its iretq by the next interrupt of its own vector. */
void idt_init(void);

/* Installs `handler` for `vector` (NULL: the default, which panics for
 * exceptions and counts anything else as unexpected). */
void set_interrupt_handler(unsigned vector, interrupt_handler handler);

/* What the host does differently from hardware at CPL3, probed at boot.
 *  iopl_ignored: cli/sti raise #GP at CPL3 despite IOPL 3. PVM hosts run
 *    guest CPL3 natively with the hardware's IOPL 0 (port I/O works only
 *    through the TSS I/O bitmap, see boot.S).
 *  level_irq_unusable: a level-triggered IOAPIC interrupt delivered to a
 *    CPL3 handler is re-delivered forever before the handler's first
 *    instruction (through an interrupt gate it is delivered once, but the
 *    EOI never clears Remote IRR, and IF stays clear). Seen on PVM; the
 *    guest cannot probe it safely, so it is assumed where iopl_ignored is
 *    seen. The command line overrides it: irq=level or irq=edge. */
struct host_quirks {
    bool iopl_ignored;
    bool level_irq_unusable;
};
extern struct host_quirks host_quirks;
void probe_host_quirks(void);

/* Counters kept by the dispatcher, for tests. */
extern volatile uint64_t interrupt_count[256];
extern volatile uint64_t unexpected_interrupts;

/* Vectors used by this guest. */
#define VECTOR_TEST_SOFT 0x80    /* `int $0x80` from tests */
#define VECTOR_LAPIC_TIMER 0xe0
#define VECTOR_DEVICE_BASE 0x40  /* IOAPIC GSI n -> VECTOR_DEVICE_BASE + n */
#define VECTOR_SPURIOUS 0xff

#endif
