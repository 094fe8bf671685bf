/* The guest's minimal runtime; see runtime.h. Everything here runs at CPL3
 * and reaches hardware through port I/O (IOPL 3). */
#include "runtime.h"

#include "x86.h"

/* ---- Serial console ------------------------------------------------------ */

#define UART_THR 0  /* transmit holding register (write) */
#define UART_IER 1  /* interrupt enable */
#define UART_LCR 3  /* line control */
#define UART_MCR 4  /* modem control */
#define UART_LSR 5  /* line status */
#define UART_LSR_THRE 0x20

void serial_init(void) {
    outb(COM1_PORT + UART_IER, 0);     /* polled: no UART interrupts */
    outb(COM1_PORT + UART_LCR, 0x03);  /* 8 data bits, no parity, 1 stop bit */
    outb(COM1_PORT + UART_MCR, 0x03);  /* DTR, RTS; OUT2 off: IRQ not gated to the PIC */
}

void serial_putc(char c) {
    /* A real 8250 needs THRE before each byte; minikvm's and QEMU's
     * transmit at once, so this loop normally reads LSR once. Bounded, so
     * a missing UART cannot hang the guest. */
    for (int spins = 0; spins < 100000 && !(inb(COM1_PORT + UART_LSR) & UART_LSR_THRE); ++spins) cpu_relax();
    outb(COM1_PORT + UART_THR, (uint8_t)c);
}

void serial_write(const char* s, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (s[i] == '\n') serial_putc('\r');
        serial_putc(s[i]);
    }
}

/* ---- Formatting ------------------------------------------------------------ */

struct sink {
    char* buf;
    size_t size;
    size_t len;
};

static void put(struct sink* out, char c) {
    if (out->len + 1 < out->size) out->buf[out->len] = c;
    out->len++;
}

static void put_number(struct sink* out, uint64_t value, unsigned base, bool upper, bool negative, int width,
                       char pad) {
    char digits[24];
    int n = 0;
    const char* set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        digits[n++] = set[value % base];
        value /= base;
    } while (value != 0);
    if (negative && pad == '0') put(out, '-');
    for (int i = n + (negative ? 1 : 0); i < width; ++i) put(out, pad);
    if (negative && pad != '0') put(out, '-');
    while (n > 0) put(out, digits[--n]);
}

int vformat(char* buf, size_t size, const char* fmt, va_list args) {
    struct sink out = {buf, size, 0};
    for (const char* p = fmt; *p; ++p) {
        if (*p != '%') {
            put(&out, *p);
            continue;
        }
        ++p;
        char pad = ' ';
        int width = 0;
        int longs = 0;
        if (*p == '0') {
            pad = '0';
            ++p;
        }
        while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
        while (*p == 'l' || *p == 'z') {
            longs += *p == 'z' ? 2 : 1;
            ++p;
        }
        switch (*p) {
            case 'd':
            case 'i': {
                int64_t v = longs ? va_arg(args, int64_t) : va_arg(args, int);
                put_number(&out, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, 10, false, v < 0, width, pad);
                break;
            }
            case 'u':
            case 'x':
            case 'X': {
                uint64_t v = longs ? va_arg(args, uint64_t) : va_arg(args, unsigned);
                put_number(&out, v, *p == 'u' ? 10 : 16, *p == 'X', false, width, pad);
                break;
            }
            case 'p':
                put(&out, '0');
                put(&out, 'x');
                put_number(&out, (uintptr_t)va_arg(args, void*), 16, false, false, width, pad);
                break;
            case 'c': put(&out, (char)va_arg(args, int)); break;
            case 's': {
                const char* s = va_arg(args, const char*);
                if (!s) s = "(null)";
                int n = (int)strlen(s);
                for (int i = n; i < width; ++i) put(&out, ' ');
                while (*s) put(&out, *s++);
                break;
            }
            case '%': put(&out, '%'); break;
            case '\0': --p; break;
            default:
                put(&out, '%');
                put(&out, *p);
                break;
        }
    }
    if (size) buf[out.len < size ? out.len : size - 1] = '\0';
    return (int)out.len;
}

int format(char* buf, size_t size, const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int n = vformat(buf, size, fmt, args);
    va_end(args);
    return n;
}

static void vprint(const char* fmt, va_list args) {
    char line[512];
    int n = vformat(line, sizeof line, fmt, args);
    serial_write(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

void print(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vprint(fmt, args);
    va_end(args);
}

/* ---- Report channel ------------------------------------------------------- */

const char* current_test;
extern char failure_reason[256];
extern bool test_failed;
extern bool test_skipped;
char failure_reason[256];
bool test_failed;
bool test_skipped;

void info(const char* fmt, ...) {
    char text[400];
    va_list args;
    va_start(args, fmt);
    vformat(text, sizeof text, fmt, args);
    va_end(args);
    print(REPORT_PREFIX "INFO %s: %s\n", current_test ? current_test : "-", text);
}

bool fail(const char* fmt, ...) {
    if (!test_failed) {
        va_list args;
        va_start(args, fmt);
        vformat(failure_reason, sizeof failure_reason, fmt, args);
        va_end(args);
        test_failed = true;
    }
    return false;
}

bool skip(const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vformat(failure_reason, sizeof failure_reason, fmt, args);
    va_end(args);
    test_skipped = true;
    return true;
}

void guest_exit(uint8_t value) {
    outb(DEBUG_EXIT_PORT, value);
    /* The VMM stops the VM a moment after the write. If nothing stops it
     * (QEMU without isa-debug-exit), say so once and spin: hlt is
     * privileged and CPL0 is gone. */
    const uint64_t start = rdtsc();
    while (rdtsc() - start < 10000000000ull) cpu_relax();
    print(REPORT_PREFIX "INFO -: debug-exit port did not stop the VM (exit value %u)\n", value);
    for (;;) cpu_relax();
}

void panic(const char* fmt, ...) {
    char text[400];
    va_list args;
    va_start(args, fmt);
    vformat(text, sizeof text, fmt, args);
    va_end(args);
    print(REPORT_PREFIX "FAIL %s: panic: %s\n", current_test ? current_test : "guest", text);
    guest_exit(EXIT_PANIC);
}

/* ---- Command line ------------------------------------------------------- */

static char cmdline_copy[1024];

void cmdline_set(const char* cmdline) {
    size_t n = 0;
    if (cmdline)
        for (; cmdline[n] && n + 1 < sizeof cmdline_copy; ++n) cmdline_copy[n] = cmdline[n];
    cmdline_copy[n] = '\0';
}

const char* cmdline_get(void) { return cmdline_copy; }

bool cmdline_value(const char* key, char* buf, size_t size) {
    size_t key_len = strlen(key);
    const char* p = cmdline_copy;
    while (*p) {
        while (*p == ' ') ++p;
        const char* word = p;
        while (*p && *p != ' ') ++p;
        if ((size_t)(p - word) > key_len && strncmp(word, key, key_len) == 0 && word[key_len] == '=') {
            const char* value = word + key_len + 1;
            size_t n = (size_t)(p - value);
            if (n + 1 > size) n = size - 1;
            memcpy(buf, value, n);
            buf[n] = '\0';
            return true;
        }
    }
    return false;
}

uint64_t cmdline_number(const char* key, uint64_t fallback) {
    char value[24];
    if (!cmdline_value(key, value, sizeof value) || value[0] < '0' || value[0] > '9') return fallback;
    uint64_t n = 0;
    for (const char* p = value; *p >= '0' && *p <= '9'; ++p) n = n * 10 + (uint64_t)(*p - '0');
    return n;
}

/* ---- Memory ------------------------------------------------------------- */

extern char __image_end[];
static uintptr_t heap_next;
static uint64_t ram_end;

void memory_init(uint64_t ram_top_below_4g) {
    heap_next = (uintptr_t)__image_end;
    ram_end = ram_top_below_4g;
}

uint64_t ram_top(void) { return ram_end; }

void* alloc_zeroed(size_t size, size_t align) {
    uintptr_t start = (heap_next + align - 1) & ~(uintptr_t)(align - 1);
    if (start + size > ram_end || start + size < start)
        panic("out of memory: %zu bytes wanted, heap at %p, RAM ends at %p", size, (void*)start, (void*)ram_end);
    heap_next = start + size;
    return memset((void*)start, 0, size);
}

uintptr_t alloc_mark(void) { return heap_next; }
void alloc_release(uintptr_t mark) { heap_next = mark; }

/* ---- Freestanding libc subset (GCC may call these itself) ---------------- */

void* memset(void* dst, int c, size_t n) {
    unsigned char* d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

void* memcpy(void* dst, const void* src, size_t n) {
    unsigned char* d = dst;
    const unsigned char* s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void* memmove(void* dst, const void* src, size_t n) {
    unsigned char* d = dst;
    const unsigned char* s = src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];
    }
    return dst;
}

int memcmp(const void* a, const void* b, size_t n) {
    const unsigned char* x = a;
    const unsigned char* y = b;
    for (size_t i = 0; i < n; ++i)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

size_t strlen(const char* s) {
    size_t n = 0;
    while (s[n]) ++n;
    return n;
}

int strcmp(const char* a, const char* b) {
    while (*a && *a == *b) ++a, ++b;
    return (unsigned char)*a - (unsigned char)*b;
}

int strncmp(const char* a, const char* b, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        if (a[i] != b[i] || !a[i]) return (unsigned char)a[i] - (unsigned char)b[i];
    }
    return 0;
}
