/* virtio-rng (the entropy device, virtio 1.2 section 5.4) over the legacy
 * virtio-pci transport, as a driver sees it: identity, features, no
 * configuration, one request queue whose device-writable buffers come back
 * filled, completion by polling and by interrupt, reset, and a driver that
 * breaks 5.4.6.1 (a device-readable buffer). Runs where minikvm has --rng
 * (or QEMU has -device virtio-rng-pci,disable-modern=on); elsewhere the
 * tests skip. */
#include "apic.h"
#include "clock.h"
#include "cpu.h"
#include "runtime.h"
#include "tests.h"
#include "virtio_pci.h"
#include "x86.h"

#define VIRTIO_PCI_DEVICE_ENTROPY 0x1005
#define RNG_QUEUE 0
#define ON_MINIKVM (boot_info.kind == BOOT_LINUX)
#define RNG_MAX_PER_CHAIN (64u << 10) /* minikvm's VirtioRng::kMaxBytesPerChain */

static const uint32_t ring_features = 1u << VIRTIO_F_RING_EVENT_IDX | 1u << VIRTIO_F_RING_INDIRECT_DESC;

static struct {
    struct virtio_pci dev;
    struct virtq vq;
    uint32_t features;
    uint8_t vector;
    volatile unsigned queue_interrupts, spurious_interrupts;
} rng;

static void rng_cleanup(void) {
    /* The device must forget our ring before the next test reuses it. */
    if (!rng.dev.io) return;
    vp_reset(&rng.dev);
    if (rng.vector) {
        vp_intx_unroute(&rng.dev, rng.vector);
        rng.vector = 0;
    }
    irq_disable();
}

static bool rng_find(void) {
    memset(&rng, 0, sizeof rng);
    if (!virtio_pci_find(VIRTIO_PCI_DEVICE_ENTROPY, &rng.dev)) return false;
    test_cleanup = rng_cleanup;
    return true;
}

#define NEED_RNG()                                                                   \
    do {                                                                             \
        if (!rng_find()) return skip("no virtio-rng (run minikvm with --rng)");     \
    } while (0)

static bool rng_start(uint32_t wanted) {
    rng.features = vp_begin_init(&rng.dev, wanted);
    CHECK(vp_setup_queue(&rng.dev, &rng.vq, RNG_QUEUE, rng.features), "request queue: no queue 0");
    vp_set_status(&rng.dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
    CHECK(vp_status(&rng.dev) == (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK),
          "status 0x%x after DRIVER_OK", vp_status(&rng.dev));
    return true;
}

static bool wait_used(uint64_t timeout_ms) {
    const uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
    while (!virtq_has_used(&rng.vq)) {
        if (now_ns() > deadline) return false;
        cpu_relax();
    }
    return true;
}

/* Posts `n` device-writable buffers as one chain (or an indirect table),
 * kicks, polls for the chain and returns its used length (-1 after fail()). */
static int64_t request(const struct virtq_buf* bufs, unsigned n, bool indirect) {
    static int token;
    struct virtq_desc* table = indirect ? alloc_zeroed(16 * n, 16) : 0;
    const int head = indirect ? virtq_add_indirect(&rng.vq, bufs, 0, n, table, &token)
                              : virtq_add(&rng.vq, bufs, 0, n, &token);
    if (head < 0) return fail("request queue full"), -1;
    vp_kick(&rng.dev, &rng.vq);
    if (!wait_used(1000)) return fail("request not completed in 1 s (status 0x%x)", vp_status(&rng.dev)), -1;
    uint32_t len = 0;
    void* got = virtq_get(&rng.vq, &len);
    if (got != &token)
        return fail("used ring returned %p, want %p (%s)", got, (void*)&token,
                    rng.vq.device_error ? rng.vq.device_error : ""), -1;
    return len;
}

/* Whether `len` bytes look random: not all one value (for 16 bytes or
 * more, 2^-120 odds of a false alarm). */
static bool varied(const uint8_t* p, uint32_t len) {
    for (uint32_t i = 1; i < len; ++i)
        if (p[i] != p[0]) return true;
    return false;
}

/* ---- rng-identity ------------------------------------------------------------ */

static bool test_rng_identity(void) {
    NEED_RNG();
    const struct pci_address a = rng.dev.pci;
    CHECK(pci_read8(a, PCI_REVISION) == 0, "revision %u, want 0", pci_read8(a, PCI_REVISION));
    CHECK(pci_read16(a, PCI_SUBSYSTEM_VENDOR_ID) == VIRTIO_PCI_VENDOR, "subsystem vendor 0x%x",
          pci_read16(a, PCI_SUBSYSTEM_VENDOR_ID));
    CHECK(pci_read16(a, PCI_SUBSYSTEM_ID) == 4, "subsystem ID %u, want 4 (entropy)", pci_read16(a, PCI_SUBSYSTEM_ID));
    const uint32_t class_code = pci_read32(a, PCI_REVISION) >> 8;
    CHECK(class_code == 0x00ff00, "class 0x%06x, want 0x00ff00 (unclassified, other; as QEMU)", class_code);
    CHECK(rng.dev.pin == 1, "interrupt pin %u, want 1 (INTA#)", rng.dev.pin);
    if (ON_MINIKVM) {
        CHECK(rng.dev.irq == 15 + a.device, "interrupt line %u, want GSI 15 + slot %u", rng.dev.irq, a.device);
        CHECK(rng.dev.bar_size == 32, "BAR0 is %u bytes, want 32 (no configuration space)", rng.dev.bar_size);
    }
    const uint16_t size = vp_queue_size(&rng.dev, RNG_QUEUE);
    CHECK(size > 0, "no request queue");
    CHECK(vp_queue_size(&rng.dev, 1) == 0, "a second queue exists (5.4.2: one request queue)");
    info("00:%02x.0 I/O 0x%x+%u, INTA# -> GSI %u, queue size %u", a.device, rng.dev.io, rng.dev.bar_size,
         rng.dev.irq, size);
    return true;
}

/* ---- rng-features ------------------------------------------------------------ */

static bool test_rng_features(void) {
    NEED_RNG();
    vp_reset(&rng.dev);
    const uint32_t offered = vp_device_features(&rng.dev);
    /* 5.4.3: no device-specific feature bits. */
    CHECK((offered & 0x00ffffffu) == 0, "device-specific feature bits offered: 0x%x", offered);
    if (ON_MINIKVM) CHECK(offered == ring_features, "features 0x%x, want EVENT_IDX|INDIRECT_DESC", offered);
    vp_set_driver_features(&rng.dev, 0xffffffffu & ~(1u << VIRTIO_F_BAD_FEATURE));
    const uint32_t kept = vp_read32(&rng.dev, VIRTIO_PCI_GUEST_FEATURES);
    CHECK((kept & ~offered) == 0, "driver features 0x%x keep bits not offered (0x%x)", kept, offered);
    return true;
}

/* ---- rng-read ------------------------------------------------------------------ */

static bool test_rng_read(void) {
    NEED_RNG();
    CHECK(rng_start(ring_features), "start");
    uint8_t* a = alloc_zeroed(64, 8);
    uint8_t* b = alloc_zeroed(64, 8);
    struct virtq_buf one = {a, 64};
    int64_t len = request(&one, 1, false);
    if (len < 0) return false;
    CHECK(len == 64, "used length %lld for a 64-byte buffer, want 64", (long long)len);
    CHECK(varied(a, 64), "64 bytes, all 0x%02x", a[0]);
    struct virtq_buf other = {b, 64};
    if ((len = request(&other, 1, false)) < 0) return false;
    CHECK(len == 64 && memcmp(a, b, 64) != 0, "two requests gave the same 64 bytes");

    /* A chain of three, then the same through an indirect table: every
     * buffer is filled, the used length covers them all. */
    uint8_t* pieces[3] = {alloc_zeroed(16, 8), alloc_zeroed(4096, 4096), alloc_zeroed(100, 8)};
    const uint32_t sizes[3] = {16, 4096, 100};
    for (int indirect = 0; indirect <= 1; ++indirect) {
        struct virtq_buf chain[3];
        for (int i = 0; i < 3; ++i) {
            memset(pieces[i], 0, sizes[i]);
            chain[i] = (struct virtq_buf){pieces[i], sizes[i]};
        }
        if ((len = request(chain, 3, indirect)) < 0) return false;
        CHECK(len == 16 + 4096 + 100, "%s of 3 buffers: used length %lld, want 4212", indirect ? "indirect table" : "chain",
              (long long)len);
        for (int i = 0; i < 3; ++i)
            CHECK(varied(pieces[i], sizes[i]), "%s: buffer %d (%u bytes) was not filled",
                  indirect ? "indirect table" : "chain", i, sizes[i]);
    }
    /* More than minikvm gives one chain: a driver takes what it gets. */
    uint8_t* big = alloc_zeroed(128u << 10, 4096);
    struct virtq_buf large = {big, 128u << 10};
    if ((len = request(&large, 1, false)) < 0) return false;
    CHECK(len > 0 && len <= (128 << 10), "used length %lld for a 128 KiB buffer", (long long)len);
    if (ON_MINIKVM) CHECK(len == RNG_MAX_PER_CHAIN, "used length %lld, want minikvm's %u", (long long)len, RNG_MAX_PER_CHAIN);
    CHECK(varied(big, (uint32_t)len), "the large buffer was not filled");
    info("64, 64, 4212, 4212 and %lld bytes", (long long)len);
    return true;
}

/* ---- rng-interrupts ------------------------------------------------------------ */

static void on_rng_interrupt(struct interrupt_frame* f) {
    (void)f;
    const uint8_t isr = vp_isr(&rng.dev); /* read-and-clear; lowers INTx */
    if (isr & VIRTIO_ISR_QUEUE) rng.queue_interrupts++;
    if (!isr) rng.spurious_interrupts++;
    lapic_eoi();
}

static bool test_rng_interrupts(void) {
    NEED_RNG();
    CHECK(rng_start(0), "start"); /* no EVENT_IDX: an interrupt per completion unless suppressed */
    rng.vector = vp_intx_route(&rng.dev, on_rng_interrupt);
    enum { kRounds = 8 };
    for (unsigned round = 1; round <= kRounds; ++round) {
        uint8_t* buf = alloc_zeroed(32, 8);
        struct virtq_buf b = {buf, 32};
        static int token;
        CHECK(virtq_add(&rng.vq, &b, 0, 1, &token) >= 0, "queue full");
        vp_kick(&rng.dev, &rng.vq);
        const uint64_t deadline = now_ns() + 1000000000ull;
        while (rng.queue_interrupts < round && now_ns() < deadline) cpu_relax();
        CHECK(rng.queue_interrupts == round, "round %u: %u queue interrupts", round, rng.queue_interrupts);
        uint32_t len = 0;
        CHECK(virtq_get(&rng.vq, &len) == &token && len == 32, "round %u: used length %u", round, len);
    }
    irq_disable();
    CHECK(rng.spurious_interrupts == 0, "%u interrupts with an empty ISR", rng.spurious_interrupts);
    info("%u requests, %u queue interrupts through IOAPIC input %u", kRounds, rng.queue_interrupts, rng.dev.irq);
    return true;
}

/* ---- rng-reset ------------------------------------------------------------------ */

static bool test_rng_reset(void) {
    NEED_RNG();
    CHECK(rng_start(ring_features), "start");
    uint8_t* buf = alloc_zeroed(64, 8);
    struct virtq_buf b = {buf, 64};
    int64_t len = request(&b, 1, false);
    if (len < 0) return false;
    /* Reset releases the queue; a new initialization works from scratch. */
    CHECK(vp_reset(&rng.dev), "status did not read 0 after reset");
    CHECK(vp_queue_pfn(&rng.dev, RNG_QUEUE) == 0, "queue PFN survived the reset");
    CHECK(rng_start(ring_features), "restart");
    memset(buf, 0, 64);
    if ((len = request(&b, 1, false)) < 0) return false;
    CHECK(len == 64 && varied(buf, 64), "after reset: used length %lld", (long long)len);
    return true;
}

/* ---- rng-readable-buffer: a driver breaking 5.4.6.1 ------------------------------ */

static bool test_rng_readable_buffer(void) {
    if (!ON_MINIKVM) return skip("checks minikvm's answer to a rule QEMU's device does not check");
    NEED_RNG();
    CHECK(rng_start(ring_features), "start");
    static const char secret[] = "must never be printed";
    uint8_t* out = alloc_zeroed(32, 8);
    const struct virtq_buf bufs[2] = {{secret, sizeof secret}, {out, 32}};
    static int token;
    CHECK(virtq_add(&rng.vq, bufs, 1, 1, &token) >= 0, "queue full");
    vp_kick(&rng.dev, &rng.vq);
    CHECK(wait_used(1000), "chain not completed in 1 s");
    uint32_t len = 99;
    CHECK(virtq_get(&rng.vq, &len) == &token, "wrong chain back");
    CHECK(len == 0, "used length %u for a chain with a device-readable buffer, want 0", len);
    CHECK(!varied(out, 32) && out[0] == 0, "the device wrote into a chain it should have refused");
    /* One bad chain does not stop the device. */
    CHECK((vp_status(&rng.dev) & VIRTIO_STATUS_NEEDS_RESET) == 0, "DEVICE_NEEDS_RESET after one bad chain");
    struct virtq_buf good = {out, 32};
    const int64_t next = request(&good, 1, false);
    if (next < 0) return false;
    CHECK(next == 32 && varied(out, 32), "the next request: used length %lld", (long long)next);
    return true;
}

const struct test rng_tests[] = {
    {"rng-identity", test_rng_identity, "virtio-rng PCI identity: IDs, class, revision 0, INTA#, one queue"},
    {"rng-features", test_rng_features, "no device features; only offered bits stick"},
    {"rng-read", test_rng_read, "buffers, chains and indirect tables come back filled; large ones partly"},
    {"rng-interrupts", test_rng_interrupts, "completions through INTx, one per request, none spurious"},
    {"rng-reset", test_rng_reset, "reset releases the queue; re-initialization works"},
    {"rng-readable-buffer", test_rng_readable_buffer, "a device-readable buffer (5.4.6.1): length 0, device goes on"},
};
const unsigned rng_test_count = ARRAY_SIZE(rng_tests);
