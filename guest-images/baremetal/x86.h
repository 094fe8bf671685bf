/* x86-64 definitions shared by the assembly and the C of the bare-metal
 * test guest: the GDT layout, control-register bits, and inline helpers for
 * the instructions C cannot express. */
#ifndef BAREMETAL_X86_H
#define BAREMETAL_X86_H

/* GDT selectors. The layout is Linux's (arch/x86/include/asm/segment.h):
 * CPL3 code runs with CS 0x33 and SS 0x2b, the selectors a Linux host's own
 * user space uses, so a hypervisor that runs guest CPL3 natively on the
 * host's descriptors (PVM does) finds the same 64-bit code segment there. */
#define KERNEL_CS 0x10  /* 64-bit code, DPL 0: also minikvm's boot CS */
#define KERNEL_DS 0x18  /* flat data, DPL 0: also minikvm's boot DS */
#define USER32_CS 0x23  /* 32-bit code, DPL 3 (unused; keeps the layout) */
#define USER_DS 0x2b    /* flat data, DPL 3 */
#define USER_CS 0x33    /* 64-bit code, DPL 3 */
#define TSS_SEL 0x40    /* 16-byte 64-bit TSS descriptor */
#define AP_TSS_SEL 0x50 /* the second vCPU's descriptor of the same TSS */

#define CR0_PE (1u << 0)
#define CR0_PG (1u << 31)
#define CR4_PAE (1u << 5)
#define MSR_EFER 0xc0000080
#define EFER_LME (1u << 8)
#define RFLAGS_IF (1u << 9)
#define RFLAGS_IOPL3 (3u << 12)

/* How the guest was entered (first argument of guest_main). */
#define BOOT_LINUX 1 /* 64-bit entry at e_entry, RSI -> boot_params */
#define BOOT_PVH 2   /* PVH 32-bit entry, EBX -> hvm_start_info */

#define AP_TRAMPOLINE 0x10000 /* where the second vCPU starts (SIPI vector 0x10), below 1 MiB */

#define IST_STACK_SIZE 4096
#define KERNEL_STACK_SIZE 4096
#define USER_STACK_SIZE 65536

#ifndef __ASSEMBLER__
#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint16_t inw(uint16_t port) {
    uint16_t v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint32_t inl(uint16_t port) {
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint64_t rdtsc(void) {
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t regs[4]) {
    __asm__ volatile("cpuid" : "=a"(regs[0]), "=b"(regs[1]), "=c"(regs[2]), "=d"(regs[3]) : "a"(leaf), "c"(subleaf));
}

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline uint64_t read_rflags(void) {
    uint64_t v;
    __asm__ volatile("pushfq; popq %0" : "=r"(v));
    return v;
}
static inline uint16_t read_cs(void) {
    uint16_t v;
    __asm__ volatile("mov %%cs, %0" : "=r"(v));
    return v;
}

/* MMIO (LAPIC, IOAPIC): volatile accesses of exactly the given width. */
static inline uint32_t mmio_read32(uint64_t address) { return *(volatile uint32_t*)address; }
static inline void mmio_write32(uint64_t address, uint32_t v) { *(volatile uint32_t*)address = v; }
static inline uint8_t mmio_read8(uint64_t address) { return *(volatile uint8_t*)address; }
static inline void mmio_write8(uint64_t address, uint8_t v) { *(volatile uint8_t*)address = v; }
static inline uint16_t mmio_read16(uint64_t address) { return *(volatile uint16_t*)address; }
static inline void mmio_write16(uint64_t address, uint16_t v) { *(volatile uint16_t*)address = v; }
static inline uint64_t mmio_read64(uint64_t address) { return *(volatile uint64_t*)address; }
static inline void mmio_write64(uint64_t address, uint64_t v) { *(volatile uint64_t*)address = v; }

/* Ordering for shared-memory protocols (virtio rings). x86 keeps loads with
 * loads and stores with stores in order, so those two only stop the
 * compiler; a store followed by a load of another location needs mfence. */
#define barrier() __asm__ volatile("" ::: "memory")
#define full_fence() __atomic_thread_fence(__ATOMIC_SEQ_CST)

#endif /* __ASSEMBLER__ */
#endif
