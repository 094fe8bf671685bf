/* The IDT and the interrupt dispatcher; see cpu.h and isr.S. */
#include "cpu.h"

#include "runtime.h"
#include "x86.h"

extern char isr_stubs[];
extern uint8_t idt[256 * 16];

volatile uint64_t interrupt_count[256];
volatile uint64_t unexpected_interrupts;
static interrupt_handler handlers[256];

static const char* const exception_names[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound", "#UD invalid opcode",
    "#NM no FPU", "#DF double fault", "coprocessor overrun", "#TS invalid TSS", "#NP segment not present",
    "#SS stack fault", "#GP general protection", "#PF page fault", "reserved 15", "#MF x87", "#AC alignment",
    "#MC machine check", "#XM SIMD", "#VE virtualization", "#CP control protection",
};

void idt_init(void) {
    for (unsigned vector = 0; vector < 256; ++vector) {
        uint64_t handler = (uint64_t)(uintptr_t)(isr_stubs + 16 * vector);
        uint8_t* gate = idt + 16 * vector;
        const uint8_t ist = (vector == 2 || vector == 8) ? 1 : 0;
        gate[0] = (uint8_t)handler;  /* offset 15:0 */
        gate[1] = (uint8_t)(handler >> 8);
        gate[2] = (uint8_t)USER_CS;  /* target code segment: DPL 3 */
        gate[3] = (uint8_t)(USER_CS >> 8);
        gate[4] = ist;
        gate[5] = 0xef;              /* present, DPL 3, type 0xf: 64-bit trap gate */
        gate[6] = (uint8_t)(handler >> 16); /* offset 31:16 */
        gate[7] = (uint8_t)(handler >> 24);
        for (int i = 0; i < 4; ++i) gate[8 + i] = (uint8_t)(handler >> (32 + 8 * i)); /* offset 63:32 */
        gate[12] = gate[13] = gate[14] = gate[15] = 0;
    }
}

struct host_quirks host_quirks;

static volatile unsigned quirk_faults;
static void skip_one_byte(struct interrupt_frame* frame) {
    quirk_faults++;
    frame->rip += 1; /* cli and sti are one byte */
}

void probe_host_quirks(void) {
    interrupt_handler saved = handlers[13];
    handlers[13] = skip_one_byte;
    quirk_faults = 0;
    __asm__ volatile("cli; sti" ::: "memory");
    handlers[13] = saved;
    host_quirks.iopl_ignored = quirk_faults != 0;
    host_quirks.level_irq_unusable = host_quirks.iopl_ignored;
    char irq[8];
    if (cmdline_value("irq", irq, sizeof irq)) host_quirks.level_irq_unusable = strcmp(irq, "edge") == 0;
}

void set_interrupt_handler(unsigned vector, interrupt_handler handler) { handlers[vector & 0xff] = handler; }

void interrupt_dispatch(struct interrupt_frame* frame);
void interrupt_dispatch(struct interrupt_frame* frame) {
    const unsigned vector = (unsigned)frame->vector & 0xff;
    interrupt_count[vector]++;
    if (handlers[vector]) {
        handlers[vector](frame);
        return;
    }
    if (vector < 32) {
        panic("unexpected exception %u (%s), error code 0x%lx at rip 0x%lx cs 0x%lx rflags 0x%lx rsp 0x%lx", vector,
              exception_names[vector] ? exception_names[vector] : "?", frame->error_code, frame->rip, frame->cs,
              frame->rflags, frame->rsp);
    }
    unexpected_interrupts++;
}
