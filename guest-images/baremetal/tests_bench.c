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
 *                  for scripts/bench to time against the host's clock */
#include "bench.h"
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
    const uint64_t total_ns = cycles_to_ns(rdtsc() - start);
    sort_u64(samples, kept);
    const uint64_t mean_ns_x10 = total_ns * 10 / n;
    info("ops=%u ns_per_op=%llu.%llu p50_ns=%llu p99_ns=%llu ops_per_s=%llu", n,
         (unsigned long long)(mean_ns_x10 / 10), (unsigned long long)(mean_ns_x10 % 10),
         (unsigned long long)cycles_to_ns(samples[kept / 2]),
         (unsigned long long)cycles_to_ns(samples[kept * 99 / 100]),
         (unsigned long long)(total_ns ? (uint64_t)n * 1000000000ull / total_ns : 0));
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

const struct test bench_tests[] = {
    {"bench-pio", bench_pio, "benchmark: port-I/O exit round trip (port 0x80)"},
    {"bench-mmio", bench_mmio, "benchmark: MMIO exit round trip (unmapped address)"},
    {"bench-console", bench_console, "benchmark: virtio-console notify-to-completion latency"},
    {"bench-clock", bench_clock, "benchmark: two marks clock-ms apart by the guest's clock, for the host to time"},
};
const unsigned bench_test_count = ARRAY_SIZE(bench_tests);
