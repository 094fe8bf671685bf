/* Interrupt and exception entry stubs. They run at CPL3: the IDT's gates
 * select USER_CS (DPL 3), so an interrupt that arrives while the guest runs
 * at CPL3 causes no privilege change and no stack switch (Intel SDM vol. 3,
 * 6.12.1: the handler runs at the DPL of its code segment; a gate to a code
 * segment with DPL > CPL would #GP, which cannot happen here since nothing
 * runs at CPL0 any more). In 64-bit mode the CPU still pushes SS:RSP, aligns
 * RSP to 16 first, and iretq pops all five words. The code is compiled with
 * -mno-red-zone because the handler's frame lands right below the
 * interrupted code's RSP.
 *
 * Stub i is at isr_stubs + 16 * i: it pushes a zero "error code" for vectors
 * where the CPU pushes none, then the vector number, and jumps to the common
 * code, which saves the general registers into a struct interrupt_frame
 * (cpu.h) and calls interrupt_dispatch(frame). */
#include "x86.h"

#define HAS_ERROR_CODE(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

    .text
    .p2align 4
    .globl isr_stubs
isr_stubs:
    .set vector, 0
    .rept 256
    .p2align 4
    .if !HAS_ERROR_CODE(vector)
    pushq $0
    .endif
    pushq $vector
    jmp isr_common
    .set vector, vector + 1
    .endr

isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call interrupt_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp                  /* vector and error code */
    iretq

    .section .note.GNU-stack, "", @progbits
