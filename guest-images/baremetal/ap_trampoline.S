/* Real-mode start of the second vCPU. smp.c copies this block to
 * AP_TRAMPOLINE (0x10000) and sends INIT, SIPI with vector 0x10: the vCPU
 * starts here in real mode with CS = 0x1000, IP = 0. Like pvh_start it
 * turns on PAE paging with the boot page tables and long mode, then jumps
 * to ap_long_mode (boot.S). 15 CPL0 instructions, 16-bit and 32-bit. */
#include "x86.h"

#define LOCAL(symbol) ((symbol) - ap_trampoline_start)

    .section .rodata.ap_trampoline, "a"
    .code16
    .globl ap_trampoline_start
ap_trampoline_start:
    cli
    movw %cs, %ax
    movw %ax, %ds                   /* DS:offset addresses this block */
    lgdtl LOCAL(ap_gdtr)            /* 32-bit base: gdt is below 4 GiB */
    movl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl $(CR0_PG | CR0_PE), %eax
    movl %eax, %cr0
    ljmpl $KERNEL_CS, $(AP_TRAMPOLINE + LOCAL(ap_trampoline_64))

    .code64
ap_trampoline_64:
    movabsq $ap_long_mode, %rax     /* leave the copy for the real image */
    jmp *%rax

    .p2align 3
ap_gdtr:
    .word 0x5f                      /* 12 descriptors: through the AP TSS */
    .long gdt
    .globl ap_trampoline_end
ap_trampoline_end:

    .section .note.GNU-stack, "", @progbits
