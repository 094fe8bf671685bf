/* virtio-9p benchmarks, for scripts/bench (not part of test=all): the
 * guest's own 9P2000.L client (p9.h) against the first virtio-9p device,
 * polling the used ring (interrupts suppressed, EVENT_IDX negotiated as
 * Linux's driver does), so the figures are the device's and its 9P
 * server's, not a guest kernel's v9fs. Each reports one line:
 *
 *   bench-9p-meta-qd1, -meta-qd8   for every file dNNN/fMMM of the tree
 *       (p9-dirs=N directories of p9-files=M files, default 200 x 100):
 *       Twalk from the root fid to it (2 names), Tgetattr, Tclunk; qd8
 *       runs 8 files at once, each its own walk -> getattr -> clunk
 *       sequence (a request is sent only once the one it depends on was
 *       answered)
 *     INFO bench-9p-meta-qdN: files=F requests=R ms=T files_per_s=X req_per_s=Y mean_us=A p50_us=B
 *         p99_us=C qd=N          (latency: per file, walk sent to clunk answered)
 *
 *   bench-9p-read-qd1, -read-qd8-fids, -read-qd8-offsets   Tlopen the file
 *       p9-stream-file=NAME (default stream.bin) and Tread it from start
 *       to end, p9-read-passes=N times (default 1), in reads of msize - 11
 *       bytes (the most an Rread of msize holds; p9-read-count=N asks for
 *       less): one read at a time; 8 in flight on 8 fids (one Twalk +
 *       Tlopen each); 8 in flight on one fid at 8 offsets. Every read must
 *       return all it asked for (up to the end of the file), and the first
 *       8 bytes of every 4 KiB block of the file must be its offset ^
 *       "HOST" (blk.h's host pattern; the benchmark's file and the test
 *       runner's pattern.bin both have it), so misplaced or lost data
 *       fails instead of looking fast
 *     INFO bench-9p-read-...: bytes=B reads=N ms=T mib_per_s=M mean_us=A p50_us=B p99_us=C qd=Q fids=F
 *         count=K                (latency: per read, sent to answered)
 *
 *   bench-9p-getattr   Tgetattr on the root fid, one at a time,
 *       p9-getattr-ops=N times (default 10000): the round trip
 *     INFO bench-9p-getattr: ops=N ms=T ops_per_s=R mean_us=A p50_us=B p99_us=C */
#include "bench.h"
#include "blk.h"
#include "clock.h"
#include "p9.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

#define MAX_LANES 8u
#define MAX_LATENCIES 65536u
#define ROOT_FID 1u
#define LANE_FID 1000u
#define TIMEOUT_S 5u
#define STAMP_BLOCK 4096u

static const uint32_t features = 1u << P9_F_MOUNT_TAG | 1u << VIRTIO_F_RING_EVENT_IDX;

/* Tenths of a microsecond, for "%llu.%llu". */
#define US(ns) (unsigned long long)((ns) / 1000), (unsigned long long)((ns) % 1000 / 100)

struct latencies {
    uint64_t* samples; /* TSC cycles */
    unsigned kept;
    uint64_t total; /* cycles, over every sample (kept or not) */
    uint64_t count;
};

static void latencies_init(struct latencies* l) {
    l->samples = alloc_zeroed(sizeof(uint64_t) * MAX_LATENCIES, 8);
    l->kept = 0;
    l->total = 0;
    l->count = 0;
}

static void latency_add(struct latencies* l, uint64_t cycles) {
    if (l->kept < MAX_LATENCIES) l->samples[l->kept++] = cycles;
    l->total += cycles;
    l->count++;
}

/* mean, p50, p99 in ns. */
static void latency_figures(struct latencies* l, uint64_t out[3]) {
    sort_u64(l->samples, l->kept);
    out[0] = l->count ? cycles_to_ns(l->total / l->count) : 0;
    out[1] = l->kept ? cycles_to_ns(l->samples[l->kept / 2]) : 0;
    out[2] = l->kept ? cycles_to_ns(l->samples[l->kept * 99 / 100]) : 0;
}

static bool session(void) {
    if (!p9_find()) return skip("no virtio-9p (run minikvm with --share DIR,tag=TAG)");
    if (!p9_session(features, ROOT_FID, 0)) return false;
    virtq_disable_interrupts(&p9_dev.vq);
    return true;
}

/* Takes the next used chain, waiting at most TIMEOUT_S; NULL after fail(). */
static struct p9_req* next_used(const char* what) {
    const uint64_t start = rdtsc(), limit = TIMEOUT_S * tsc_hz();
    for (;;) {
        struct p9_req* r = p9_get_used();
        if (r) return r;
        if (p9_dev.vq.device_error) return fail("%s: %s", what, p9_dev.vq.device_error), (struct p9_req*)0;
        if (rdtsc() - start > limit)
            return fail("%s: no reply in %u s (status 0x%x)", what, TIMEOUT_S, vp_status(&p9_dev.dev)),
                   (struct p9_req*)0;
        cpu_relax();
    }
}

/* ---- Metadata: walk + getattr + clunk per file ------------------------------------------ */

struct meta_lane {
    struct p9_req* req;
    uint32_t file; /* index into the tree */
    unsigned step; /* 0 walk, 1 getattr, 2 clunk */
    uint64_t started;
};

/* Starts lane `lane` on `file`: its first step, the walk from the root to
 * dNNN/fMMM (built, not posted), its latency clock started. */
static void meta_lane_begin(struct meta_lane* l, unsigned lane, uint16_t tag, uint32_t file, uint32_t per_dir) {
    char dir[8], name[8];
    format(dir, sizeof dir, "d%03u", file / per_dir);
    format(name, sizeof name, "f%03u", file % per_dir);
    const char* names[] = {dir, name};
    l->file = file;
    l->step = 0;
    l->started = rdtsc();
    l->req->lane = lane;
    p9_build_walk(l->req, tag, ROOT_FID, LANE_FID + lane, names, 2);
}

static bool run_meta(unsigned depth) {
    if (!session()) return false;
    const uint32_t dirs = (uint32_t)cmdline_number("p9-dirs", 200);
    const uint32_t per_dir = (uint32_t)cmdline_number("p9-files", 100);
    const uint32_t files = dirs * per_dir;
    CHECK(files > 0 && dirs <= 1000 && per_dir <= 1000, "p9-dirs=%u p9-files=%u: 1 to 1000 each", dirs, per_dir);
    struct meta_lane lanes[MAX_LANES];
    struct latencies lat;
    latencies_init(&lat);
    uint32_t next_file = 0, done = 0;
    uint64_t requests = 0;
    for (unsigned i = 0; i < depth; ++i) lanes[i].req = p9_req_new(64, P9_SMALL_REPLY);

    const uint64_t start = rdtsc();
    /* Each lane: walk its file, then getattr, then clunk, then the next
     * file; every step is sent once the previous step's reply came. */
    for (unsigned i = 0; i < depth && next_file < files; ++i) {
        meta_lane_begin(&lanes[i], i, (uint16_t)(1 + i), next_file++, per_dir);
        CHECK(p9_post(lanes[i].req), "queue full");
    }
    p9_kick();
    while (done < files) {
        struct p9_req* r = next_used("metadata");
        if (!r) return false;
        unsigned posted = 0;
        for (; r; r = p9_get_used()) {
            struct meta_lane* l = &lanes[r->lane];
            static const uint8_t want[3] = {P9_RWALK, P9_RGETATTR, P9_RCLUNK};
            const int result = p9_check_reply(r, want[l->step]);
            if (result == P9_FAILED) return false;
            CHECK(result == 0, "file %u, step %u: Rlerror %d", l->file, l->step, -result);
            if (l->step == 0) {
                struct p9_in in;
                p9_in_init(&in, r);
                CHECK(p9_get16(&in) == 2, "file %u: a partial walk", l->file);
            }
            requests++;
            const uint16_t tag = r->tag;
            if (l->step == 0) {
                p9_build_getattr(r, tag, LANE_FID + r->lane);
                l->step = 1;
            } else if (l->step == 1) {
                p9_build_clunk(r, tag, LANE_FID + r->lane);
                l->step = 2;
            } else {
                latency_add(&lat, rdtsc() - l->started);
                done++;
                if (next_file >= files) continue; /* this lane is finished */
                meta_lane_begin(l, r->lane, tag, next_file++, per_dir);
            }
            CHECK(p9_post(r), "queue full");
            posted++;
        }
        if (posted) p9_kick();
    }
    const uint64_t ns = cycles_to_ns(rdtsc() - start);
    CHECK(ns > 0, "no time passed");
    uint64_t f[3];
    latency_figures(&lat, f);
    info("files=%u requests=%llu ms=%llu files_per_s=%llu req_per_s=%llu mean_us=%llu.%llu p50_us=%llu.%llu "
         "p99_us=%llu.%llu qd=%u",
         files, (unsigned long long)requests, (unsigned long long)(ns / 1000000),
         (unsigned long long)((uint64_t)files * 1000000000ull / ns), (unsigned long long)(requests * 1000000000ull / ns),
         US(f[0]), US(f[1]), US(f[2]), depth);
    return true;
}

/* ---- Streaming reads ------------------------------------------------------------------ */

/* The first 8 bytes of every 4 KiB block of the file in [offset, +n) that
 * lies wholly inside the reply must be the block's offset ^ "HOST". */
static bool stamps_ok(const uint8_t* data, uint64_t offset, uint32_t n) {
    uint64_t block = (offset + STAMP_BLOCK - 1) & ~(uint64_t)(STAMP_BLOCK - 1);
    for (; block + 8 <= offset + n; block += STAMP_BLOCK) {
        const uint8_t* p = data + (block - offset);
        uint64_t word = 0;
        for (int i = 7; i >= 0; --i) word = word << 8 | p[i];
        CHECK(word == (block ^ BLK_PATTERN_HOST), "the file's block at %llu reads 0x%llx, not its stamp",
              (unsigned long long)block, (unsigned long long)word);
    }
    return true;
}

/* Where the sequential readers are: `next` runs over every pass of the
 * file; a read never crosses the end of the file (the last one of a pass
 * asks for the whole count and gets what is left), the next pass starts
 * at 0. */
struct stream {
    uint64_t size, total, next;
    uint32_t count;
    bool separate_fids; /* lane i reads through fid LANE_FID + i, else all through LANE_FID */
    unsigned in_flight;
};

/* Builds and posts r's read of the next piece of the stream (not kicked). */
static bool stream_post(struct stream* s, struct p9_req* r, uint16_t tag) {
    r->offset = s->next % s->size;
    p9_build_read(r, tag, LANE_FID + (s->separate_fids ? r->lane : 0), r->offset, s->count);
    s->next += s->size - r->offset < s->count ? s->size - r->offset : s->count;
    CHECK(p9_post(r), "queue full");
    s->in_flight++;
    return true;
}

static bool run_read(unsigned depth, bool separate_fids) {
    if (!session()) return false;
    char file[64];
    if (!cmdline_value("p9-stream-file", file, sizeof file)) memcpy(file, "stream.bin", 11);
    const unsigned fids = separate_fids ? depth : 1;
    const char* names[] = {file};
    struct p9_qid qid;
    for (unsigned i = 0; i < fids; ++i) {
        const int n = p9_walk(ROOT_FID, LANE_FID + i, names, 1, &qid);
        if (n == P9_FAILED) return false;
        CHECK(n == 1, "Twalk to %s: answer %d (is it in the shared directory?)", file, n);
        const int opened = p9_lopen(LANE_FID + i, 0, &qid);
        if (opened == P9_FAILED) return false;
        CHECK(opened == 0, "Tlopen %s: Rlerror %d", file, -opened);
    }
    struct p9_attr attr;
    const int got = p9_getattr(LANE_FID, &attr);
    if (got == P9_FAILED) return false;
    CHECK(got == 0 && attr.size > 0, "Tgetattr %s: answer %d, size %llu", file, got, (unsigned long long)attr.size);
    const uint64_t size = attr.size;
    uint32_t count = (uint32_t)cmdline_number("p9-read-count", p9_dev.msize - P9_READ_HEADER);
    if (count == 0 || count > p9_dev.msize - P9_READ_HEADER) count = p9_dev.msize - P9_READ_HEADER;

    struct p9_req* reqs[MAX_LANES];
    for (unsigned i = 0; i < depth; ++i) reqs[i] = p9_req_new(64, p9_dev.msize);
    const uint64_t passes = cmdline_number("p9-read-passes", 1);
    CHECK(passes > 0, "p9-read-passes=0");
    struct latencies lat;
    latencies_init(&lat);
    struct stream st = {.size = size, .total = size * passes, .count = count, .separate_fids = separate_fids};
    uint64_t bytes = 0, reads = 0;
    const uint64_t start = rdtsc();
    for (unsigned i = 0; i < depth && st.next < st.total; ++i) {
        reqs[i]->lane = i;
        if (!stream_post(&st, reqs[i], (uint16_t)(1 + i))) return false;
    }
    p9_kick();
    while (st.in_flight > 0) {
        struct p9_req* r = next_used("streaming");
        if (!r) return false;
        unsigned posted = 0;
        for (; r; r = p9_get_used()) {
            const uint64_t now = rdtsc();
            st.in_flight--;
            const int result = p9_check_reply(r, P9_RREAD);
            if (result == P9_FAILED) return false;
            CHECK(result == 0, "Tread at %llu: Rlerror %d", (unsigned long long)r->offset, -result);
            struct p9_in in;
            p9_in_init(&in, r);
            const uint32_t n = p9_get32(&in);
            const uint64_t want = size - r->offset < count ? size - r->offset : count;
            CHECK(n == want && in.at + n == in.len, "Tread of %u at %llu: %u bytes, want %llu", count,
                  (unsigned long long)r->offset, n, (unsigned long long)want);
            if (!stamps_ok(in.p + in.at, r->offset, n)) return false;
            latency_add(&lat, now - r->submitted_tsc);
            bytes += n;
            reads++;
            if (st.next >= st.total) continue;
            if (!stream_post(&st, r, r->tag)) return false;
            posted++;
        }
        if (posted) p9_kick();
    }
    const uint64_t ns = cycles_to_ns(rdtsc() - start);
    CHECK(bytes == st.total, "%llu bytes read of %llu", (unsigned long long)bytes, (unsigned long long)st.total);
    CHECK(ns > 0, "no time passed");
    uint64_t f[3];
    latency_figures(&lat, f);
    const uint64_t mib_x10 = (bytes >> 10) * 10 * 1000000 / (ns / 1000 ? ns / 1000 : 1) >> 10;
    info("bytes=%llu reads=%llu ms=%llu mib_per_s=%llu.%llu mean_us=%llu.%llu p50_us=%llu.%llu p99_us=%llu.%llu "
         "qd=%u fids=%u count=%u",
         (unsigned long long)bytes, (unsigned long long)reads, (unsigned long long)(ns / 1000000),
         (unsigned long long)(mib_x10 / 10), (unsigned long long)(mib_x10 % 10), US(f[0]), US(f[1]), US(f[2]), depth,
         fids, count);
    return true;
}

/* ---- Round trip ---------------------------------------------------------------------- */

static bool bench_getattr(void) {
    if (!session()) return false;
    const uint64_t n = cmdline_number("p9-getattr-ops", 10000);
    CHECK(n > 0, "p9-getattr-ops=0");
    struct p9_req* r = p9_req_new(64, P9_SMALL_REPLY);
    struct latencies lat;
    latencies_init(&lat);
    const uint64_t start = rdtsc();
    for (uint64_t i = 0; i < n; ++i) {
        p9_build_getattr(r, (uint16_t)(1 + (i & 0x7fff)), ROOT_FID);
        CHECK(p9_post(r), "queue full");
        p9_kick();
        struct p9_req* got = next_used("Tgetattr");
        if (!got) return false;
        const uint64_t now = rdtsc();
        CHECK(got == r, "a chain that was not sent came back");
        const int result = p9_check_reply(r, P9_RGETATTR);
        if (result == P9_FAILED) return false;
        CHECK(result == 0, "Tgetattr %llu: Rlerror %d", (unsigned long long)i, -result);
        latency_add(&lat, now - r->submitted_tsc);
    }
    const uint64_t ns = cycles_to_ns(rdtsc() - start);
    CHECK(ns > 0, "no time passed");
    uint64_t f[3];
    latency_figures(&lat, f);
    info("ops=%llu ms=%llu ops_per_s=%llu mean_us=%llu.%llu p50_us=%llu.%llu p99_us=%llu.%llu",
         (unsigned long long)n, (unsigned long long)(ns / 1000000), (unsigned long long)(n * 1000000000ull / ns),
         US(f[0]), US(f[1]), US(f[2]));
    return true;
}

static bool bench_meta_qd1(void) { return run_meta(1); }
static bool bench_meta_qd8(void) { return run_meta(8); }
static bool bench_read_qd1(void) { return run_read(1, false); }
static bool bench_read_qd8_fids(void) { return run_read(8, true); }
static bool bench_read_qd8_offsets(void) { return run_read(8, false); }

const struct test p9_bench_tests[] = {
    {"bench-9p-meta-qd1", bench_meta_qd1, "benchmark: virtio-9p Twalk (2 names) + Tgetattr + Tclunk per file, depth 1"},
    {"bench-9p-meta-qd8", bench_meta_qd8, "benchmark: virtio-9p Twalk + Tgetattr + Tclunk per file, 8 files at once"},
    {"bench-9p-read-qd1", bench_read_qd1, "benchmark: virtio-9p sequential Tread of msize - 11 bytes, depth 1"},
    {"bench-9p-read-qd8-fids", bench_read_qd8_fids, "benchmark: virtio-9p sequential Tread, 8 in flight on 8 fids"},
    {"bench-9p-read-qd8-offsets", bench_read_qd8_offsets,
     "benchmark: virtio-9p sequential Tread, 8 in flight on one fid"},
    {"bench-9p-getattr", bench_getattr, "benchmark: virtio-9p Tgetattr round trip on the root fid, depth 1"},
};
const unsigned p9_bench_test_count = ARRAY_SIZE(p9_bench_tests);
