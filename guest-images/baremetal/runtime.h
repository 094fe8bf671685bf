/* The guest's minimal runtime: serial console, formatted output, the report
 * channel, the command line, memory helpers and a page allocator. */
#ifndef BAREMETAL_RUNTIME_H
#define BAREMETAL_RUNTIME_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* --- Serial console: COM1, polled (8250: wait for THRE, write THR). */
#define COM1_PORT 0x3f8
void serial_init(void);
void serial_putc(char c);
void serial_write(const char* s, size_t n);

/* --- printf subset: %s %c %d %i %u %x %X %p, the l/ll/z length modifiers,
 * a field width and the 0 flag. */
int vformat(char* buf, size_t size, const char* fmt, va_list args);
int format(char* buf, size_t size, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void print(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* --- Report channel. Every line starts with "MINIKVM-BAREMETAL ":
 *   BOOT via=minikvm|pvh cmdline=<...>     once, first
 *   PASS <test>                            a test passed
 *   FAIL <test>: <reason>                  a test failed (first failed check)
 *   SKIP <test>: <reason>                  a test could not run here
 *   INFO <test>: <text>                    measurements, diagnostics
 *   DONE passed=N failed=N skipped=N       once, last
 * then the verdict on the debug-exit port (0xf4): 0 when nothing failed,
 * EXIT_FAILED when a test failed, EXIT_PANIC on a crash (unexpected
 * exception) or bad command line. minikvm and QEMU's isa-debug-exit both
 * exit with (V << 1) | 1: 1, 3 and 5. */
#define REPORT_PREFIX "MINIKVM-BAREMETAL "
#define EXIT_PASSED 0
#define EXIT_FAILED 1
#define EXIT_PANIC 2
#define DEBUG_EXIT_PORT 0xf4

void info(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/* Records why the running test failed (the first call wins) and returns
 * false, so a test can `return fail("...")`. */
bool fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
/* Marks the running test skipped, with the reason; returns true. */
bool skip(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
#define CHECK(cond, ...)                  \
    do {                                  \
        if (!(cond)) return fail(__VA_ARGS__); \
    } while (0)

/* The name of the running test (for INFO lines), NULL between tests. */
extern const char* current_test;

__attribute__((noreturn)) void guest_exit(uint8_t value);
__attribute__((noreturn, format(printf, 1, 2))) void panic(const char* fmt, ...);

/* --- Command line: "key=value" words separated by spaces. Copies the value
 * of the first `key` into buf (NUL-terminated) and returns true. */
void cmdline_set(const char* cmdline);
const char* cmdline_get(void);
bool cmdline_value(const char* key, char* buf, size_t size);
/* The decimal number `key=` gives (its leading digits), or `fallback` when the
 * key is absent or its value does not start with a digit. */
uint64_t cmdline_number(const char* key, uint64_t fallback);

/* --- Memory: what the loader reported, and a bump allocator over the RAM
 * after the image (zeroed, never freed; alloc_mark/alloc_release rewind it
 * so each test can start from the same point). */
void memory_init(uint64_t ram_top_below_4g);
uint64_t ram_top(void);  /* first byte past the RAM that starts at 1 MiB */
void* alloc_zeroed(size_t size, size_t align);
uintptr_t alloc_mark(void);
void alloc_release(uintptr_t mark);

void* memset(void* dst, int c, size_t n);
void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);
int strcmp(const char* a, const char* b);
int strncmp(const char* a, const char* b, size_t n);

#endif
