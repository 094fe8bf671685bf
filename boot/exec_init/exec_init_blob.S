/*
 * The static init binary of `minikvm --exec`, as read-only data in
 * libminikvm_core (boot/exec_init_image.cpp). Assembled by a custom target in
 * boot/exec_init/meson.build with -DMINIKVM_EXEC_INIT_PATH="<the binary>";
 * the target depends on the binary, so a new init means a new object.
 */

	.section .rodata.minikvm_exec_init, "a", @progbits
	.balign 16
	.globl minikvm_exec_init_start
	.type minikvm_exec_init_start, @object
minikvm_exec_init_start:
	.incbin MINIKVM_EXEC_INIT_PATH
minikvm_exec_init_end:
	.size minikvm_exec_init_start, minikvm_exec_init_end - minikvm_exec_init_start

	/* The size as data: no relocation, and no pointer arithmetic across
	 * two symbols on the C++ side. */
	.balign 8
	.globl minikvm_exec_init_size
	.type minikvm_exec_init_size, @object
minikvm_exec_init_size:
	.quad minikvm_exec_init_end - minikvm_exec_init_start
	.size minikvm_exec_init_size, 8

	/* Data only: the stack need not be executable. */
	.section .note.GNU-stack, "", @progbits
