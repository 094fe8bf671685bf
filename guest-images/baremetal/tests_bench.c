/* Benchmarks, for scripts/bench (not part of test=all): each measures with
 * the TSC at CPL3 and reports one line
 *
 *   MINIKVM-BAREMETAL INFO bench-NAME: ops=N ns_per_op=X p50_ns=Y p99_ns=Z ops_per_s=R
 *
 * so the same guest gives comparable figures under minikvm, a bare KVM_RUN
 * loop and QEMU. `bench-iterations=N` on the command line changes N.
 *
 *   bench-pio      one `out` to port 0x80 (a port every VMM ignores): the
 *                  cost of a port-I/O exit handled in the VMM's user space
 *   bench-mmio     one 32-bit write to an unmapped address in the PCI hole:
 *                  an MMIO exit (KVM decodes the instruction) handled the same way
 *   bench-console  virtio-console transmit of one byte: add the buffer,
 *                  notify, poll the used ring until the device returns it --
 *                  notify-to-completion latency, and notifies per second
 *   bench-clock    two lines, "mark=0 ns=N" and "mark=1 ns=N" about
 *                  `clock-ms=N` (default 1000) apart by the guest's clock,
 *                  for scripts/bench to time against the host's clock
 *
 * Console throughput: kernel-log-like text (lines of about 80 bytes,
 * "[    1.234567] message\n", no panic/oops/warning wording) built before
 * the clock starts; ops = bytes, ops_per_s = bytes/s, and the line ends
 * with crc32=X (zlib's CRC-32 of the text) so the host can check that every
 * byte arrived. The last byte of the text is always '\n'.
 *
 *   bench-serial-out   `serial-out-bytes=N` (default 16384) bytes to the
 *                      8250's THR at 0x3f8, each after polling LSR for THRE
 *                      as a console driver does (two exits per byte);
 *                      p50/p99 per byte
 *   bench-console-out  `console-out-bytes=N` (default 16 MiB) bytes through
 *                      virtio-console's transmitq, one 4 KiB buffer per
 *                      descriptor, 8 in flight: refill, notify, poll the used
 *                      ring; p50/p99 per 4 KiB buffer (added to returned) */
#include "bench.h"
#include "bench_irq.h"
#include "clock.h"
#include "console.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

#define BENCH_PORT 0x80
#define BENCH_MMIO_ADDRESS 0xd0000000ull /* minikvm: PCI memory window, nothing mapped; QEMU: unassigned */
#define DEFAULT_ITERATIONS 100000u
#define MAX_SAMPLES 16384u

static unsigned iterations(void) {
    char value[16];
    if (!cmdline_value("bench-iterations", value, sizeof value)) return DEFAULT_ITERATIONS;
    unsigned n = 0;
    for (const char* p = value; *p >= '0' && *p <= '9'; ++p) n = n * 10 + (unsigned)(*p - '0');
    return n ? n : DEFAULT_ITERATIONS;
}

/* Shell sort: the guest has no libc, and a few thousand samples sort in
 * well under a millisecond. */
void sort_u64(uint64_t* v, unsigned n) {
    for (unsigned gap = n / 2; gap > 0; gap /= 2)
        for (unsigned i = gap; i < n; ++i) {
            const uint64_t x = v[i];
            unsigned j = i;
            for (; j >= gap && v[j - gap] > x; j -= gap) v[j] = v[j - gap];
            v[j] = x;
        }
}

uint64_t cycles_to_ns(uint64_t cycles) { return cycles * 1000000000ull / tsc_hz(); }

/* The report line: the mean and rate from the whole run's `total_ns`, the
 * percentiles from `kept` samples (TSC cycles; sorted here); `extra` is
 * appended after ops_per_s. */
static void report(unsigned n, uint64_t total_ns, uint64_t* samples, unsigned kept, const char* extra) {
    sort_u64(samples, kept);
    const uint64_t mean_ns_x10 = total_ns * 10 / n;
    info("ops=%u ns_per_op=%llu.%llu p50_ns=%llu p99_ns=%llu ops_per_s=%llu%s", n,
         (unsigned long long)(mean_ns_x10 / 10), (unsigned long long)(mean_ns_x10 % 10),
         (unsigned long long)cycles_to_ns(samples[kept / 2]),
         (unsigned long long)cycles_to_ns(samples[kept * 99 / 100]),
         (unsigned long long)(total_ns ? (uint64_t)n * 1000000000ull / total_ns : 0), extra);
}

/* Runs `op` `n` times; every op is timed on its own for the percentiles
 * (the first MAX_SAMPLES), the whole run for the mean and the rate. */
static void measure(unsigned n, bool (*op)(void)) {
    uint64_t* samples = alloc_zeroed(sizeof(uint64_t) * MAX_SAMPLES, 8);
    const unsigned kept = n < MAX_SAMPLES ? n : MAX_SAMPLES;
    const uint64_t start = rdtsc();
    for (unsigned i = 0; i < n; ++i) {
        const uint64_t t0 = rdtsc();
        if (!op()) {
            fail("operation %u of %u failed", i, n);
            return;
        }
        if (i < kept) samples[i] = rdtsc() - t0;
    }
    report(n, cycles_to_ns(rdtsc() - start), samples, kept, "");
}

static bool pio_op(void) {
    outb(BENCH_PORT, 0);
    return true;
}

static bool mmio_op(void) {
    mmio_write32(BENCH_MMIO_ADDRESS, 0);
    return true;
}

static bool console_op(void) {
    /* One byte on both VMMs: a zero-length buffer would let minikvm skip
     * the output write that QEMU has to do. */
    static const char newline[] = "\n";
    static char token[1];
    struct virtq* tx = &console_dev.tx;
    const struct virtq_buf buf = {newline, 1};
    if (virtq_add(tx, &buf, 1, 0, token) < 0) return fail("transmitq full");
    if (virtq_kick_prepare(tx)) vp_notify(&console_dev.dev, CONSOLE_TX);
    while (!virtq_has_used(tx)) cpu_relax();
    uint32_t len = 0;
    return virtq_get(tx, &len) == token || fail("used ring returned a foreign token");
}

static bool bench_pio(void) {
    measure(iterations(), pio_op);
    return true;
}

static bool bench_mmio(void) {
    measure(iterations(), mmio_op);
    return true;
}

static bool bench_console(void) {
    if (!console_find()) return skip("no virtio-console");
    /* No EVENT_IDX: every transmit is notified, which is what is measured. */
    if (!console_start(0)) return false;
    measure(iterations() / 10, console_op);
    return true;
}

/* The same one-byte transmit, completion by interrupt (MSI-X, or INTx
 * without it): each sample is notify to the handler's entry. */
static bool bench_console_irq(void) {
    if (!console_find()) return skip("no virtio-console");
    if (!console_start(0)) return false;
    static const uint16_t tx_queue = CONSOLE_TX;
    if (!bench_irq_start(&console_dev.dev, &tx_queue, 1)) return false;
    struct virtq* tx = &console_dev.tx;
    virtq_enable_interrupts(tx);
    static const char newline[] = "\n";
    static char token[1];
    const unsigned n = iterations() / 10;
    uint64_t* samples = alloc_zeroed(sizeof(uint64_t) * MAX_SAMPLES, 8);
    const unsigned kept = n < MAX_SAMPLES ? n : MAX_SAMPLES;
    info("measuring"); /* the host samples its CPU time here (scripts/bench) */
    const uint64_t start = rdtsc();
    for (unsigned i = 0; i < n; ++i) {
        const struct virtq_buf buf = {newline, 1};
        const uint64_t seen = bench_irq.count;
        const uint64_t t0 = rdtsc();
        CHECK(virtq_add(tx, &buf, 1, 0, token) >= 0, "transmitq full");
        if (virtq_kick_prepare(tx)) vp_notify(&console_dev.dev, CONSOLE_TX);
        CHECK(bench_irq_wait(seen, 1000), "transmit %u: no interrupt in 1 s (%s)", i, bench_irq_mode());
        if (i < kept) samples[i] = bench_irq.tsc - t0;
        uint32_t len = 0;
        CHECK(virtq_get(tx, &len) == token, "interrupt before the used entry, or a foreign token");
    }
    const uint64_t total_ns = cycles_to_ns(rdtsc() - start);
    info("measured");
    bench_irq_stop();
    CHECK(bench_irq.count == n, "%llu interrupts for %u transmits", (unsigned long long)bench_irq.count, n);
    uint64_t sum = 0;
    for (unsigned i = 0; i < kept; ++i) sum += samples[i];
    sort_u64(samples, kept);
    info("ops=%u ops_per_s=%llu mean_ns=%llu p50_ns=%llu p99_ns=%llu irq=%s", n,
         (unsigned long long)(total_ns ? (uint64_t)n * 1000000000ull / total_ns : 0),
         (unsigned long long)cycles_to_ns(sum / kept), (unsigned long long)cycles_to_ns(samples[kept / 2]),
         (unsigned long long)cycles_to_ns(samples[kept * 99 / 100]), bench_irq_mode());
    return true;
}

static bool bench_clock(void) {
    char value[16];
    uint64_t ms = 0;
    if (cmdline_value("clock-ms", value, sizeof value))
        for (const char* p = value; *p >= '0' && *p <= '9'; ++p) ms = ms * 10 + (uint64_t)(*p - '0');
    if (ms == 0) ms = 1000;
    info("mark=0 ns=%lu tsc_hz=%lu source=%s", now_ns(), tsc_hz(), tsc_source());
    delay_us(ms * 1000);
    info("mark=1 ns=%lu", now_ns());
    return true;
}

/* ---- Console throughput ---------------------------------------------------- */

#define SERIAL_THR 0          /* transmit holding register (write) */
#define SERIAL_LSR 5          /* line status */
#define SERIAL_LSR_THRE 0x20  /* THR empty: the next byte may go */
#define DEFAULT_SERIAL_OUT_BYTES 16384u
#define DEFAULT_CONSOLE_OUT_BYTES (16u << 20)
#define MAX_CONSOLE_OUT_BYTES (64u << 20)
#define CONSOLE_OUT_CHUNK 4096u
#define CONSOLE_OUT_IN_FLIGHT 8u

/* What a booting kernel prints, none of it a report the VMM watches for
 * (no "Kernel panic", "Oops", "BUG:", "WARNING:", "INFO: task" ...). */
static const char* const log_messages[] = {
    "pci 0000:00:1f.2: [8086:2922] type 00 class 0x010601 conventional PCI endpoint",
    "ACPI: PCI: Interrupt link LNKD configured for IRQ 11",
    "clocksource: tsc: mask: 0xffffffffffffffff max_cycles: 0x25a39a8c8a3, max_idle_ns: 440795",
    "Memory: 1004340K/1048052K available (16384K kernel code, 2560K rwdata, 6772K rodata)",
    "virtio_blk virtio2: [vda] 2097152 512-byte logical blocks (1.07 GB/1.00 GiB)",
    "EXT4-fs (vda): mounted filesystem 3f1c2a4e-0b7d-4e15 r/w with ordered data mode.",
    "systemd[1]: Started systemd-journald.service - Journal Service.",
    "tcp_listen_portaddr_hash hash table entries: 1024 (order: 2, 16384 bytes, linear)",
    "NET: Registered PF_INET6 protocol family",
    "Freeing unused kernel image (initmem) memory: 2740K",
    "virtio_net virtio1 enp0s3: renamed from eth0",
    "audit: type=1400 audit(1700000000.123:42): apparmor=\"STATUS\" operation=\"profile_load\"",
    "usb 1-1: new high-speed USB device number 2 using xhci_hcd",
    "sd 0:0:0:0: [sda] 41943040 512-byte logical blocks: (21.5 GB/20.0 GiB)",
    "random: crng init done",
    "systemd[1]: Mounted sys-kernel-debug.mount - Kernel Debug File System.",
    "e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx",
    "Run /sbin/init as init process",
    "x86/fpu: Supporting XSAVE feature 0x002: 'SSE registers'",
    "smpboot: CPU0: Intel(R) Xeon(R) CPU @ 2.60GHz (family: 0x6, model: 0x55, stepping: 0x7)",
};

/* `key=N` from the command line, or `fallback` (also for 0), at most `max`. */
static uint32_t cmdline_bytes(const char* key, uint32_t fallback, uint32_t max) {
    char value[16];
    if (!cmdline_value(key, value, sizeof value)) return fallback;
    uint64_t n = 0;
    for (const char* p = value; *p >= '0' && *p <= '9'; ++p) n = n * 10 + (uint64_t)(*p - '0');
    return n == 0 ? fallback : n > max ? max : (uint32_t)n;
}

/* Fills out[0..n) with log lines, "[seconds.micros] message\n", timestamps
 * rising about 1.8 ms a line; the last byte is '\n' whatever line it cuts. */
static void log_text(char* out, uint32_t n) {
    char line[160];
    uint32_t at = 0;
    for (uint32_t k = 0; at < n; ++k) {
        const uint64_t us = 1500000ull + (uint64_t)k * 1789u + (k * 7919u) % 997u;
        const char* message = log_messages[(k * 7u + k / 13u) % ARRAY_SIZE(log_messages)];
        const int len = format(line, sizeof line, "[%5u.%06u] %s\n", (unsigned)(us / 1000000u),
                               (unsigned)(us % 1000000u), message);
        for (int i = 0; i < len && at < n; ++i) out[at++] = line[i];
    }
    out[n - 1] = '\n';
}

/* zlib's CRC-32 (reflected, polynomial 0xedb88320), for the host to check. */
static uint32_t crc32(const char* data, uint32_t n) {
    static uint32_t table[256];
    if (table[1] == 0)
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
    uint32_t crc = 0xffffffffu;
    for (uint32_t i = 0; i < n; ++i) crc = table[(crc ^ (uint8_t)data[i]) & 0xff] ^ (crc >> 8);
    return crc ^ 0xffffffffu;
}

static bool bench_serial_out(void) {
    const uint32_t n = cmdline_bytes("serial-out-bytes", DEFAULT_SERIAL_OUT_BYTES, MAX_CONSOLE_OUT_BYTES);
    char* text = alloc_zeroed(n, 64);
    log_text(text, n);
    uint64_t* samples = alloc_zeroed(sizeof(uint64_t) * MAX_SAMPLES, 8);
    const unsigned kept = n < MAX_SAMPLES ? n : MAX_SAMPLES;
    const uint64_t start = rdtsc();
    for (uint32_t i = 0; i < n; ++i) {
        const uint64_t t0 = rdtsc();
        /* Like Linux's 8250 console (wait_for_xmitr): THRE, then the byte. */
        for (unsigned spins = 0; !(inb(COM1_PORT + SERIAL_LSR) & SERIAL_LSR_THRE); ++spins)
            if (spins == 100000) return fail("LSR never showed THRE before byte %u", i);
        outb(COM1_PORT + SERIAL_THR, (uint8_t)text[i]);
        if (i < kept) samples[i] = rdtsc() - t0;
    }
    const uint64_t total_ns = cycles_to_ns(rdtsc() - start);
    char extra[24];
    format(extra, sizeof extra, " crc32=%08x", crc32(text, n));
    report(n, total_ns, samples, kept, extra);
    return true;
}

struct console_out_chunk {
    uint64_t added; /* TSC when it went into the ring */
};

static bool bench_console_out(void) {
    if (!console_find()) return skip("no virtio-console");
    /* No EVENT_IDX: every batch is notified. */
    if (!console_start(0)) return false;
    struct virtq* tx = &console_dev.tx;
    const uint32_t n = cmdline_bytes("console-out-bytes", DEFAULT_CONSOLE_OUT_BYTES, MAX_CONSOLE_OUT_BYTES);
    char* text = alloc_zeroed(n, 4096);
    log_text(text, n);
    const uint32_t chunks = (n + CONSOLE_OUT_CHUNK - 1) / CONSOLE_OUT_CHUNK;
    struct console_out_chunk* chunk = alloc_zeroed(sizeof *chunk * chunks, 16);
    uint64_t* samples = alloc_zeroed(sizeof(uint64_t) * MAX_SAMPLES, 8);
    const unsigned kept = chunks < MAX_SAMPLES ? chunks : MAX_SAMPLES;
    const unsigned depth = tx->size < CONSOLE_OUT_IN_FLIGHT ? tx->size : CONSOLE_OUT_IN_FLIGHT;
    const uint64_t timeout = 5 * tsc_hz();
    uint32_t next = 0, done = 0;
    unsigned busy = 0;
    const uint64_t start = rdtsc();
    while (done < chunks) {
        unsigned added = 0;
        for (; busy < depth && next < chunks; ++next, ++busy, ++added) {
            const uint32_t offset = next * CONSOLE_OUT_CHUNK;
            const uint32_t len = n - offset < CONSOLE_OUT_CHUNK ? n - offset : CONSOLE_OUT_CHUNK;
            const struct virtq_buf buf = {text + offset, len};
            chunk[next].added = rdtsc();
            if (virtq_add(tx, &buf, 1, 0, &chunk[next]) < 0) return fail("transmitq full at buffer %u", next);
        }
        if (added && virtq_kick_prepare(tx)) vp_notify(&console_dev.dev, CONSOLE_TX);
        const uint64_t wait = rdtsc();
        while (!virtq_has_used(tx)) {
            if (rdtsc() - wait > timeout)
                return fail("%u buffers in flight, none returned in 5 s (%u of %u done)", busy, done, chunks);
            cpu_relax();
        }
        while (virtq_has_used(tx)) {
            uint32_t len = 0;
            struct console_out_chunk* got = virtq_get(tx, &len);
            const uint64_t now = rdtsc();
            if (!got || got < chunk || got >= chunk + chunks)
                return fail("used ring returned a foreign token (%s)", tx->device_error ? tx->device_error : "");
            const uint32_t i = (uint32_t)(got - chunk);
            if (i < kept) samples[i] = now - got->added;
            ++done;
            --busy;
        }
    }
    const uint64_t total_ns = cycles_to_ns(rdtsc() - start);
    char extra[24];
    format(extra, sizeof extra, " crc32=%08x", crc32(text, n));
    report(n, total_ns, samples, kept, extra);
    return true;
}

const struct test bench_tests[] = {
    {"bench-pio", bench_pio, "benchmark: port-I/O exit round trip (port 0x80)"},
    {"bench-mmio", bench_mmio, "benchmark: MMIO exit round trip (unmapped address)"},
    {"bench-console", bench_console, "benchmark: virtio-console notify-to-completion latency"},
    {"bench-console-irq", bench_console_irq, "benchmark: virtio-console notify-to-interrupt-handler latency"},
    {"bench-serial-out", bench_serial_out, "benchmark: kernel-log text through the 8250 (THRE poll, THR write)"},
    {"bench-console-out", bench_console_out, "benchmark: kernel-log text through virtio-console, 4 KiB buffers"},
    {"bench-clock", bench_clock, "benchmark: two marks clock-ms apart by the guest's clock, for the host to time"},
};
const unsigned bench_test_count = ARRAY_SIZE(bench_tests);
