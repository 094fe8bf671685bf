/*
 * minikvm-outb PORT VALUE: write one byte to an x86 I/O port from user space.
 *
 * The guest /init normally writes the debug-exit port through /dev/port, but
 * Debian's stock cloud kernel is built without CONFIG_DEVPORT, so /init falls
 * back to this helper (ioperm + outb). PORT and VALUE are decimal or 0x-hex.
 *
 * Freestanding (no libc): the binary is a few KB and needs nothing at run
 * time. Built by build-initramfs.sh with
 *   gcc -Os -static -nostdlib -ffreestanding -fno-stack-protector ...
 */

#define SYS_write 1
#define SYS_ioperm 173
#define SYS_exit 60

static long sys3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

static void fail(const char *msg)
{
	long len = 0;

	while (msg[len])
		len++;
	sys3(SYS_write, 2, (long)msg, len);
	sys3(SYS_exit, 1, 0, 0);
}

/* Parses decimal or 0x-prefixed hex; returns -1 on junk or overflow. */
static long parse(const char *s)
{
	long v = 0, base = 10;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	}
	if (!*s)
		return -1;
	for (; *s; s++) {
		long d;

		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (base == 16 && *s >= 'a' && *s <= 'f')
			d = *s - 'a' + 10;
		else if (base == 16 && *s >= 'A' && *s <= 'F')
			d = *s - 'A' + 10;
		else
			return -1;
		v = v * base + d;
		if (v > 0xffff)
			return -1;
	}
	return v;
}

/* Called from _start with the initial stack: argc, argv[0], argv[1], ... */
__attribute__((used, noreturn)) static void start_c(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	long port, value;

	if (argc != 3)
		fail("usage: minikvm-outb PORT VALUE\n");
	port = parse(argv[1]);
	value = parse(argv[2]);
	if (port < 0 || value < 0 || value > 0xff)
		fail("minikvm-outb: bad PORT or VALUE\n");
	if (sys3(SYS_ioperm, port, 1, 1) != 0)
		fail("minikvm-outb: ioperm failed\n");
	__asm__ volatile("outb %b0, %w1" : : "a"(value), "Nd"(port));
	sys3(SYS_exit, 0, 0, 0);
	for (;;)
		;
}

/* Entry point: pass the stack pointer (argc/argv) to C, 16-byte aligned. */
__asm__(".text\n"
	".globl _start\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call start_c\n"
	"	hlt\n");
