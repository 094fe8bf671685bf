/* virtio-blk benchmarks, for scripts/bench (not part of test=all): each
 * keeps a fixed number of requests in flight against the first virtio-blk
 * disk, polling the used ring (interrupts suppressed, so the figures are
 * the device's and the host's, not the guest's interrupt path), and
 * reports one line
 *
 *   MINIKVM-BAREMETAL INFO bench-blk-NAME: ops=N bytes=B ms=T ops_per_s=R mib_per_s=M
 *       mean_us=X p50_us=Y p99_us=Z qd=Q bs=S
 *
 * Latency is per request, from adding it to the ring to finding it used
 * (at depth 32 it includes the wait behind the others).
 *
 *   bench-blk-seq-read, -seq-write         1 MiB requests, sequential, depth 1
 *   bench-blk-rand-read-qd1, -write-qd1    4 KiB requests at random 4 KiB-aligned offsets
 *   bench-blk-rand-read-qd32, -write-qd32  the same with 32 in flight
 *   bench-blk-irq-read-qd1, -irq-read-qd32 4 KiB random reads, interrupt-driven
 *   (and -irq-write-qd1, -irq-write-qd32:   and the same writes):
 *                                          the guest waits for the device's
 *                                          interrupt (MSI-X, or INTx without it;
 *                                          see bench_irq.h); latency is from
 *                                          adding a request to the handler's
 *                                          entry; the line adds irq=msix|intx,
 *                                          and a second line counts interrupts
 *
 * Command line: blk-ms=N runs each for N ms (default 1000); blk-start=S
 * and blk-sectors=N restrict it to sectors [S, S+N) (default: the whole
 * disk). Writes overwrite the disk: give it a scratch image. */
#include "bench.h"
#include "bench_irq.h"
#include "blk.h"
#include "clock.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

#define MAX_DEPTH 32u
#define MAX_LATENCIES 65536u

struct workload {
    bool write;
    bool random;
    uint32_t block; /* bytes per request */
    unsigned depth;
    bool irq; /* wait for interrupts instead of polling */
};

/* xorshift64: cheap, and the same offsets on every VMM. */
static uint64_t next_random(uint64_t* state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

static bool run_workload(const struct workload* w) {
    if (!blk_find()) return skip("no virtio-blk (run minikvm with --disk path=FILE)");
    /* EVENT_IDX: the device asks for kicks only when it has run dry, as
     * Linux's driver negotiates it. Direct descriptors: 3 per request. */
    if (!blk_start(1u << VIRTIO_F_RING_EVENT_IDX)) return false;
    if (w->irq) {
        static const uint16_t queue = BLK_QUEUE;
        if (!bench_irq_start(&blk_dev.dev, &queue, 1)) return false;
        virtq_enable_interrupts(&blk_dev.vq);
    } else {
        virtq_disable_interrupts(&blk_dev.vq);
    }

    const uint64_t capacity = blk_capacity();
    const uint64_t first = cmdline_number("blk-start", 0);
    uint64_t sectors = cmdline_number("blk-sectors", capacity);
    if (first >= capacity) return fail("blk-start=%llu is past the disk (%llu sectors)", (unsigned long long)first,
                                      (unsigned long long)capacity);
    if (sectors > capacity - first) sectors = capacity - first;
    const uint32_t block_sectors = w->block / BLK_SECTOR;
    const uint64_t slots_in_range = sectors / block_sectors;
    CHECK(slots_in_range > 0, "range of %llu sectors is smaller than one request", (unsigned long long)sectors);
    if (w->write && ((blk_dev.features >> BLK_F_RO) & 1)) return skip("read-only disk");
    const uint64_t duration = cmdline_number("blk-ms", 1000) * tsc_hz() / 1000;

    struct blk_req* reqs = alloc_zeroed(sizeof(struct blk_req) * MAX_DEPTH, 16);
    uint8_t* buffers = alloc_zeroed((size_t)w->block * w->depth, 4096);
    memset(buffers, 0x5a, (size_t)w->block * w->depth); /* written data: not zeros a host could skip */
    uint64_t* latencies = alloc_zeroed(sizeof(uint64_t) * MAX_LATENCIES, 8);
    unsigned free_slots[MAX_DEPTH], free_count = w->depth;
    for (unsigned i = 0; i < w->depth; ++i) free_slots[i] = w->depth - 1 - i;

    uint64_t ops = 0, kept = 0, sequential = 0, seed = 0x9e3779b97f4a7c15ull;
    uint64_t rechecked = 0;     /* irq: requests found by the re-arm's re-check, not by an interrupt */
    bool used_at_rearm = false; /* irq: the re-arm found new used entries (no interrupt will come for them) */
    unsigned in_flight = 0;
    info("measuring"); /* the host samples its CPU time here (scripts/bench) */
    const uint64_t start = rdtsc(), stop_at = start + duration;
    /* Polled: how long the ring may stay silent before the device's status
     * is read. Reading it is a register access, an exit to the VMM: done on
     * every pass it would be the guest's own exit per request, and the
     * figures would measure that exit rather than the device. */
    const uint64_t silence = tsc_hz() / 100; /* 10 ms */
    uint64_t last_progress = start;
    uint64_t latency_total = 0;
    /* The interrupt count the next wait compares with: taken before the
     * kick (an interrupt may arrive during it) and, from then on, before
     * each re-arm: an interrupt for an entry published just after the
     * re-arm may come before the next kick, and is the only one the device
     * sends (EVENT_IDX) until the driver re-arms again. */
    uint64_t seen = bench_irq.count;
    for (;;) {
        const bool stopping = rdtsc() >= stop_at;
        unsigned added = 0;
        while (!stopping && free_count > 0) {
            const unsigned s = free_slots[--free_count];
            const uint64_t slot = w->random ? next_random(&seed) % slots_in_range : sequential++ % slots_in_range;
            const struct virtq_buf buf = {buffers + (size_t)s * w->block, w->block};
            reqs[s].submitted_tsc = rdtsc();
            CHECK(blk_add(&reqs[s], w->write ? BLK_T_OUT : BLK_T_IN, first + slot * block_sectors, &buf, 1, !w->write,
                          false) >= 0,
                  "queue full with %u in flight", in_flight);
            in_flight++;
            added++;
        }
        if (added) blk_kick();
        if (stopping && in_flight == 0) break;
        /* Interrupt-driven: wait for the interrupt, unless the last re-arm
         * found entries the device had published while interrupts were
         * suppressed (it will not interrupt for those: the driver's
         * re-check is how they are found, as in Linux's virtqueue). An
         * announced request's latency ends at the handler's entry. */
        const bool announced = w->irq && !used_at_rearm;
        if (announced)
            CHECK(bench_irq_wait(seen, 2000),
                  "no interrupt in 2 s with %u requests in flight (%s, status 0x%x; used idx %u, used_event %u, "
                  "next to consume %u)",
                  in_flight, bench_irq_mode(), vp_status(&blk_dev.dev), *blk_dev.vq.used_idx,
                  *blk_dev.vq.used_event, blk_dev.vq.last_used);
        const uint64_t announced_tsc = bench_irq.tsc;
        uint32_t len = 0;
        struct blk_req* r;
        const uint64_t ops_before_reaping = ops;
        while ((r = virtq_get(&blk_dev.vq, &len)) != 0) {
            /* The interrupt may predate this pass's kick (it came after the
             * re-arm): a request submitted since was not announced by it. */
            const bool by_interrupt = announced && announced_tsc >= r->submitted_tsc;
            const uint64_t latency = (by_interrupt ? announced_tsc : rdtsc()) - r->submitted_tsc;
            if (w->irq && !announced) rechecked++;
            CHECK(r->status == BLK_S_OK, "request at sector %llu: status %u", (unsigned long long)r->header.sector,
                  r->status);
            latency_total += latency;
            if (kept < MAX_LATENCIES) latencies[kept++] = latency;
            free_slots[free_count++] = (unsigned)(r - reqs);
            in_flight--;
            ops++;
        }
        /* Interrupts back on for the next used entry (EVENT_IDX: used_event). */
        if (w->irq) {
            seen = bench_irq.count;
            used_at_rearm = virtq_enable_interrupts(&blk_dev.vq);
        }
        CHECK(!blk_dev.vq.device_error, "%s", blk_dev.vq.device_error);
        /* Polled: a broken device would leave this loop spinning for ever,
         * so a silent ring gets its status read. (Interrupt-driven runs
         * time out instead.) */
        if (!w->irq) {
            const uint64_t now = rdtsc();
            if (ops_before_reaping != ops) last_progress = now;
            else if (now - last_progress > silence) {
                CHECK(!(vp_status(&blk_dev.dev) & VIRTIO_STATUS_NEEDS_RESET), "device needs reset");
                last_progress = now;
            }
        }
    }
    const uint64_t ns = cycles_to_ns(rdtsc() - start);
    info("measured"); /* before the sorting below, so the host samples while the VMM still runs */
    if (w->irq) bench_irq_stop();
    CHECK(ops > 0 && ns > 0, "no request completed");
    sort_u64(latencies, (unsigned)kept);
    const uint64_t bytes = ops * w->block;
    const uint64_t mean_ns = cycles_to_ns(latency_total / ops);
    const uint64_t mib_x10 = (bytes >> 10) * 10 * 1000000 / (ns / 1000 ? ns / 1000 : 1) >> 10; /* no 64-bit overflow */
    info("ops=%llu bytes=%llu ms=%llu ops_per_s=%llu mib_per_s=%llu.%llu mean_us=%llu.%llu p50_us=%llu.%llu "
         "p99_us=%llu.%llu qd=%u bs=%u%s%s",
         (unsigned long long)ops, (unsigned long long)bytes, (unsigned long long)(ns / 1000000),
         (unsigned long long)(ops * 1000000000ull / ns), (unsigned long long)(mib_x10 / 10),
         (unsigned long long)(mib_x10 % 10), (unsigned long long)(mean_ns / 1000),
         (unsigned long long)(mean_ns % 1000 / 100), (unsigned long long)(cycles_to_ns(latencies[kept / 2]) / 1000),
         (unsigned long long)(cycles_to_ns(latencies[kept / 2]) % 1000 / 100),
         (unsigned long long)(cycles_to_ns(latencies[kept * 99 / 100]) / 1000),
         (unsigned long long)(cycles_to_ns(latencies[kept * 99 / 100]) % 1000 / 100), w->depth, w->block,
         w->irq ? " irq=" : "", w->irq ? bench_irq_mode() : "");
    if (w->irq)
        info("interrupts=%llu for %llu requests, %llu more found by the re-check after re-arming",
             (unsigned long long)bench_irq.count, (unsigned long long)ops, (unsigned long long)rechecked);
    vp_reset(&blk_dev.dev);
    return true;
}

#define WORKLOAD(fn, write, random, block, depth, irq)                     \
    static bool fn(void) {                                                 \
        static const struct workload w = {write, random, block, depth, irq}; \
        return run_workload(&w);                                           \
    }

WORKLOAD(bench_seq_read, false, false, 1u << 20, 1, false)
WORKLOAD(bench_seq_write, true, false, 1u << 20, 1, false)
WORKLOAD(bench_rand_read_qd1, false, true, 4096, 1, false)
WORKLOAD(bench_rand_write_qd1, true, true, 4096, 1, false)
WORKLOAD(bench_rand_read_qd32, false, true, 4096, 32, false)
WORKLOAD(bench_rand_write_qd32, true, true, 4096, 32, false)
WORKLOAD(bench_irq_read_qd1, false, true, 4096, 1, true)
WORKLOAD(bench_irq_read_qd32, false, true, 4096, 32, true)
WORKLOAD(bench_irq_write_qd1, true, true, 4096, 1, true)
WORKLOAD(bench_irq_write_qd32, true, true, 4096, 32, true)

const struct test blk_bench_tests[] = {
    {"bench-blk-seq-read", bench_seq_read, "benchmark: virtio-blk sequential read, 1 MiB requests, depth 1"},
    {"bench-blk-seq-write", bench_seq_write, "benchmark: virtio-blk sequential write, 1 MiB requests, depth 1"},
    {"bench-blk-rand-read-qd1", bench_rand_read_qd1, "benchmark: virtio-blk random 4 KiB reads, depth 1"},
    {"bench-blk-rand-write-qd1", bench_rand_write_qd1, "benchmark: virtio-blk random 4 KiB writes, depth 1"},
    {"bench-blk-rand-read-qd32", bench_rand_read_qd32, "benchmark: virtio-blk random 4 KiB reads, depth 32"},
    {"bench-blk-rand-write-qd32", bench_rand_write_qd32, "benchmark: virtio-blk random 4 KiB writes, depth 32"},
    {"bench-blk-irq-read-qd1", bench_irq_read_qd1, "benchmark: virtio-blk random 4 KiB reads, depth 1, by interrupt"},
    {"bench-blk-irq-read-qd32", bench_irq_read_qd32, "benchmark: virtio-blk random 4 KiB reads, depth 32, by interrupt"},
    {"bench-blk-irq-write-qd1", bench_irq_write_qd1, "benchmark: virtio-blk random 4 KiB writes, depth 1, by interrupt"},
    {"bench-blk-irq-write-qd32", bench_irq_write_qd32,
     "benchmark: virtio-blk random 4 KiB writes, depth 32, by interrupt"},
};
const unsigned blk_bench_test_count = ARRAY_SIZE(blk_bench_tests);
