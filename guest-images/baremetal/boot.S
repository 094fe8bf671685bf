/* Entry points and the only CPL0 code of the bare-metal test guest.
 *
 * Two ways in, one binary:
 *  - minikvm (and any Linux-style 64-bit ELF loader): e_entry = _start, in
 *    64-bit mode at CPL0 with identity paging, RSI -> boot_params;
 *  - QEMU -kernel (PVH): the XEN_ELFNOTE_PHYS32_ENTRY note below names
 *    pvh_start, entered in 32-bit protected mode with paging off and
 *    EBX -> hvm_start_info. It turns on PAE paging and long mode itself.
 * Both reach common64, which installs this guest's own GDT, TSS, IDT and
 * page tables and leaves CPL0 for good with iretq (CPL3, IOPL 3).
 *
 * Why so little here: on PVM hosts guest CPL0 code is emulated (~0.5M
 * instructions/s), CPL3 code runs natively. Everything that can be done at
 * CPL3 is: the page tables are static data assembled below, the IDT is
 * filled in by C code at CPL3 (descriptor tables are plain memory, readable
 * and writable at CPL3 since every page is a user page).
 *
 * CPL0 instructions executed, counted from the code below: 36 when entered
 * at _start (1 + common64's 35, the iretq included), 51 through the PVH
 * entry (16 more, in 32-bit and compatibility mode). At ~0.5M emulated
 * instructions/s on PVM that is about 0.1 ms. Nothing returns to CPL0
 * afterwards: every IDT gate points at DPL-3 code (cpu.c, isr.S).
 */
#include "x86.h"

#define PAGE_PRESENT 0x1
#define PAGE_WRITABLE 0x2
#define PAGE_USER 0x4
#define PAGE_HUGE 0x80

/* The PVH entry note (Xen's public elfnote.h: XEN_ELFNOTE_PHYS32_ENTRY = 18,
 * name "Xen", desc = the 32-bit physical entry address). QEMU reads the desc
 * of a 64-bit ELF as 8 bytes and aligns the name to the PT_NOTE segment's
 * alignment, which the linker script keeps at 4. */
    .section .note.pvh, "a", @note
    .p2align 2
    .long 4             /* namesz: "Xen\0" */
    .long 8             /* descsz */
    .long 18            /* type: XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .quad pvh_start

    .section .text.boot, "ax"
    .code32
/* PVH: 32-bit protected mode, flat CS/DS/ES/SS, paging off, interrupts off,
 * no stack, EBX = physical address of struct hvm_start_info. */
    .globl pvh_start
pvh_start:
    cli
    movl %ebx, %esi                 /* hvm_start_info: second argument of guest_main */
    lgdt gdt_descriptor             /* 32-bit lgdt: 16-bit limit, 32-bit base */
    movl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $pml4, %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl $(CR0_PG | CR0_PE), %eax   /* paging on: long mode becomes active */
    movl %eax, %cr0
    ljmp $KERNEL_CS, $pvh_long_mode

    .code64
pvh_long_mode:
    movl $BOOT_PVH, %edi
    jmp common64

/* minikvm / Linux 64-bit boot protocol: RSI = boot_params. */
    .globl _start
_start:
    movl $BOOT_LINUX, %edi
    /* fall through */

common64:
    /* Our GDT (same kernel selectors as the boot GDT), our page tables
     * (identity, every level user-accessible), CR4 = PAE only: TSD clear so
     * rdtsc works at CPL3; no SMEP/SMAP, so CPL0 may run on user pages. */
    lgdt gdt_descriptor(%rip)
    leaq pml4(%rip), %rax
    movq %rax, %cr3
    movl $CR4_PAE, %eax
    movq %rax, %cr4
    movl $KERNEL_DS, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    leaq kernel_stack_top(%rip), %rsp
    pushq $KERNEL_CS                /* reload CS from our GDT */
    leaq 1f(%rip), %rax
    pushq %rax
    lretq
1:
    /* The TSS descriptor's base is split over four fields; fill them in. */
    leaq tss(%rip), %rax
    movw %ax, gdt_tss + 2(%rip)     /* base 15:0 */
    shrq $16, %rax
    movb %al, gdt_tss + 4(%rip)     /* base 23:16 */
    movb %ah, gdt_tss + 7(%rip)     /* base 31:24 */
    shrq $16, %rax
    movl %eax, gdt_tss + 8(%rip)    /* base 63:32 */
    movl $TSS_SEL, %eax
    ltr %ax
    lidt idt_descriptor(%rip)
    /* Mask both 8259 PICs: firmware (SeaBIOS under QEMU) may leave the
     * PIT's IRQ 0 unmasked there, and it would arrive as ExtINT. */
    movb $0xff, %al
    outb %al, $0x21
    outb %al, $0xa1
    /* Drop to CPL3 for good: SS, RSP, RFLAGS, CS, RIP. RFLAGS has IF set:
     * on PVM CPL3 cannot change IF (cli/sti #GP whatever the IOPL, see
     * x86.h), so interrupts stay enabled and the LAPIC's task priority
     * masks them instead. IOPL 3 is for hardware and QEMU (PVM ignores it
     * and uses the TSS bitmap). RDI and RSI (boot kind, boot info) pass
     * through to guest_main. */
    pushq $USER_DS
    leaq user_stack_top(%rip), %rax
    pushq %rax
    pushq $(RFLAGS_IOPL3 | RFLAGS_IF | 0x2)
    pushq $USER_CS
    leaq cpl3_start(%rip), %rax
    pushq %rax
    iretq

/* The second vCPU (smp.c), after ap_trampoline.S brought it to long mode:
 * the same GDT, IDT and page tables, its own TSS descriptor (the same TSS:
 * nothing uses RSP0/IST concurrently) and stacks, then CPL3 for good, like
 * the boot vCPU: 21 CPL0 instructions here. */
    .globl ap_long_mode
ap_long_mode:
    lgdt gdt_descriptor(%rip)       /* the trampoline's copy had a 32-bit base */
    movl $KERNEL_DS, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    leaq ap_kernel_stack_top(%rip), %rsp
    movl $AP_TSS_SEL, %eax
    ltr %ax
    lidt idt_descriptor(%rip)
    pushq $USER_DS
    leaq ap_user_stack_top(%rip), %rax
    pushq %rax
    pushq $(RFLAGS_IOPL3 | RFLAGS_IF | 0x2)
    pushq $USER_CS
    leaq ap_main(%rip), %rax
    pushq %rax
    iretq

    .text
cpl3_start:                         /* first CPL3 instruction */
    xorl %ebp, %ebp
    call guest_main
1:  ud2                             /* guest_main does not return */
    jmp 1b

    .data
/* GDT, Linux's layout (see x86.h). Access bytes have the accessed bit set so
 * the CPU never writes to the table. */
    .p2align 4
    .globl gdt
gdt:
    .quad 0                         /* 0x00 null */
    .quad 0x00cf9b000000ffff        /* 0x08 32-bit code, DPL 0 */
    .quad 0x00af9b000000ffff        /* 0x10 KERNEL_CS: 64-bit code, DPL 0 */
    .quad 0x00cf93000000ffff        /* 0x18 KERNEL_DS: data, DPL 0 */
    .quad 0x00cffb000000ffff        /* 0x23 USER32_CS: 32-bit code, DPL 3 */
    .quad 0x00cff3000000ffff        /* 0x2b USER_DS: data, DPL 3 */
    .quad 0x00affb000000ffff        /* 0x33 USER_CS: 64-bit code, DPL 3 */
    .quad 0                         /* 0x38 unused */
gdt_tss:                            /* 0x40 TSS_SEL: available 64-bit TSS, limit 104 + 8192 */
    .quad 0x0000890000002068        /* base filled in by common64 */
    .quad 0
    .globl gdt_ap_tss
gdt_ap_tss:                         /* 0x50 AP_TSS_SEL: the same TSS for the second vCPU */
    .quad 0                         /* copied from gdt_tss by smp.c (ltr marks a descriptor busy) */
    .quad 0
gdt_end:

    .p2align 3
    .word 0                         /* aligns the base below */
    .globl gdt_descriptor
gdt_descriptor:
    .word gdt_end - gdt - 1
    .quad gdt

    .p2align 3
    .word 0
    .globl idt_descriptor
idt_descriptor:
    .word 256 * 16 - 1
    .quad idt

/* 64-bit TSS: 104 bytes, then an I/O permission bitmap that allows every
 * port, then the 0xff byte that must end it. On real hardware IOPL 3 alone
 * would do; PVM ignores the guest's IOPL at CPL3 (CPL3 runs with the
 * hardware's IOPL 0) but honours the bitmap. RSP0 is the stack for the
 * CPL3 -> CPL0 gates (isr.S); IST1 is used by the double-fault and NMI
 * gates. */
    .p2align 4
    .globl tss
tss:
    .long 0
    .quad kernel_stack_top          /* RSP0 */
    .quad 0, 0                      /* RSP1, RSP2 */
    .quad 0
    .quad ist_stack_top             /* IST1 */
    .quad 0, 0, 0, 0, 0, 0          /* IST2-7 */
    .quad 0
    .word 0
    .word 104                       /* I/O permission bitmap offset */
    .fill 8192, 1, 0                /* one bit per port, 0 = allowed */
    .byte 0xff
tss_end:

/* Identity map of the low 4 GiB in 2 MiB pages, present, writable and
 * user-accessible at every level. Assembled here, so no CPL0 loop builds it. */
    .p2align 12
    .globl pml4
pml4:
    .quad pdpt + (PAGE_PRESENT | PAGE_WRITABLE | PAGE_USER)
    .fill 511, 8, 0
pdpt:
    .quad page_directories + 0 * 4096 + (PAGE_PRESENT | PAGE_WRITABLE | PAGE_USER)
    .quad page_directories + 1 * 4096 + (PAGE_PRESENT | PAGE_WRITABLE | PAGE_USER)
    .quad page_directories + 2 * 4096 + (PAGE_PRESENT | PAGE_WRITABLE | PAGE_USER)
    .quad page_directories + 3 * 4096 + (PAGE_PRESENT | PAGE_WRITABLE | PAGE_USER)
    .fill 508, 8, 0
page_directories:
    .set page, 0
    .rept 2048
    .quad (page << 21) | (PAGE_PRESENT | PAGE_WRITABLE | PAGE_USER | PAGE_HUGE)
    .set page, page + 1
    .endr

    .bss
    .p2align 12
    .globl idt
idt:
    .skip 256 * 16
    .p2align 4
    .skip KERNEL_STACK_SIZE
kernel_stack_top:
    .skip IST_STACK_SIZE
    .globl ist_stack_top
ist_stack_top:
    .skip USER_STACK_SIZE
user_stack_top:
    .skip KERNEL_STACK_SIZE
ap_kernel_stack_top:
    .skip USER_STACK_SIZE
ap_user_stack_top:

    .section .note.GNU-stack, "", @progbits
