/* The guest's virtio-blk driver; see blk.h. */
#include "blk.h"

#include "apic.h"
#include "clock.h"
#include "cpu.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

struct blk blk_dev;

void blk_cleanup_irq(void) {
    if (blk_dev.vector) {
        vp_intx_unroute(&blk_dev.dev, blk_dev.vector);
        blk_dev.vector = 0;
    }
    irq_disable();
}

static void blk_cleanup(void) {
    /* The device must forget our rings (and finish any I/O into our
     * buffers) before the next test reuses that memory. */
    if (blk_dev.dev.io) {
        vp_reset(&blk_dev.dev);
        blk_cleanup_irq();
    }
}

bool blk_find(void) {
    memset(&blk_dev, 0, sizeof blk_dev);
    if (!virtio_pci_find(VIRTIO_PCI_DEVICE_BLOCK, &blk_dev.dev)) return false;
    test_cleanup = blk_cleanup;
    return true;
}

bool blk_start(uint32_t wanted) {
    struct blk* b = &blk_dev;
    b->features = vp_begin_init(&b->dev, wanted);
    CHECK(vp_setup_queue(&b->dev, &b->vq, BLK_QUEUE, b->features), "request queue: no queue 0");
    vp_set_status(&b->dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
    CHECK(vp_status(&b->dev) == (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK),
          "status 0x%x after DRIVER_OK", vp_status(&b->dev));
    return true;
}

/* A legacy device's config is read at the width of each field: QEMU answers
 * nothing else. */
uint32_t blk_config32(uint16_t offset) { return vp_read32(&blk_dev.dev, (uint16_t)(blk_dev.dev.config + offset)); }

uint64_t blk_capacity(void) {
    /* Two halves of a le64; the capacity does not change under us here
     * (no config interrupt), so no generation loop is needed. */
    return blk_config32(BLK_CFG_CAPACITY) | (uint64_t)blk_config32(BLK_CFG_CAPACITY + 4) << 32;
}

int blk_add(struct blk_req* r, uint32_t type, uint64_t sector, const struct virtq_buf* data, unsigned n,
            bool device_writes, bool indirect) {
    struct virtq_buf bufs[16];
    if (n > ARRAY_SIZE(bufs) - 2) return -1;
    r->header.type = type;
    r->header.ioprio = 0;
    r->header.sector = sector;
    r->status = BLK_S_NONE;
    r->done = false;
    r->used_len = 0xffffffffu;
    bufs[0] = (struct virtq_buf){&r->header, sizeof r->header};
    for (unsigned i = 0; i < n; ++i) bufs[1 + i] = data[i];
    bufs[1 + n] = (struct virtq_buf){&r->status, 1};
    const unsigned out = device_writes ? 1 : 1 + n, in = device_writes ? n + 1 : 1;
    if (!indirect) return virtq_add(&blk_dev.vq, bufs, out, in, r);
    struct virtq_desc* table = alloc_zeroed(sizeof(struct virtq_desc) * (n + 2), 16);
    return virtq_add_indirect(&blk_dev.vq, bufs, out, in, table, r);
}

int blk_add_raw(struct blk_req* r, const struct virtq_buf* bufs, unsigned out, unsigned in) {
    r->done = false;
    r->used_len = 0xffffffffu;
    return virtq_add(&blk_dev.vq, bufs, out, in, r);
}

void blk_kick(void) { vp_kick(&blk_dev.dev, &blk_dev.vq); }

unsigned blk_reap(void) {
    unsigned n = 0;
    uint32_t len = 0;
    struct blk_req* r;
    while ((r = virtq_get(&blk_dev.vq, &len)) != 0) {
        r->used_len = len;
        r->done = true;
        n++;
    }
    return n;
}

bool blk_wait(struct blk_req* r, uint64_t timeout_ms) {
    const uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
    while (!r->done) {
        if (!blk_reap()) {
            if (blk_dev.vq.device_error || now_ns() > deadline) return false;
            cpu_relax();
        }
    }
    return true;
}

int blk_do(uint32_t type, uint64_t sector, void* data, uint32_t len, bool device_writes, uint32_t* used) {
    static struct blk_req r;
    const struct virtq_buf buf = {data, len};
    if (blk_add(&r, type, sector, &buf, len ? 1 : 0, device_writes, false) < 0) {
        fail("request queue full");
        return -1;
    }
    blk_kick();
    if (!blk_wait(&r, 2000)) {
        fail("request type %u at sector %llu not completed in 2 s (status 0x%x%s%s)", type,
             (unsigned long long)sector, vp_status(&blk_dev.dev), blk_dev.vq.device_error ? ", " : "",
             blk_dev.vq.device_error ? blk_dev.vq.device_error : "");
        return -1;
    }
    if (used) *used = r.used_len;
    return r.status;
}

static void on_blk_interrupt(struct interrupt_frame* f) {
    (void)f;
    const uint8_t isr = vp_isr(&blk_dev.dev); /* read-and-clear; lowers INTx */
    if (isr & VIRTIO_ISR_QUEUE) blk_dev.queue_interrupts++;
    if (isr & VIRTIO_ISR_CONFIG) blk_dev.config_interrupts++;
    if (!isr) blk_dev.spurious_interrupts++;
    lapic_eoi();
}

void blk_enable_irq(void) {
    blk_dev.vector = vp_intx_route(&blk_dev.dev, on_blk_interrupt);
}

void blk_pattern_fill(void* buf, uint64_t disk_offset, uint32_t len, uint64_t magic) {
    /* Byte copies: the unaligned-buffer tests pass odd addresses. `len`
     * and `disk_offset` are multiples of 8. */
    uint8_t* p = buf;
    for (uint32_t i = 0; i < len / 8; ++i) {
        const uint64_t word = (disk_offset + 8ull * i) ^ magic;
        memcpy(p + 8ull * i, &word, 8);
    }
}

int64_t blk_pattern_check(const void* buf, uint64_t disk_offset, uint32_t len, uint64_t magic) {
    const uint8_t* p = buf;
    for (uint32_t i = 0; i < len; ++i) {
        const uint64_t o = disk_offset + i;
        const uint64_t word = (o & ~7ull) ^ magic;
        if (p[i] != (uint8_t)(word >> (8 * (o & 7)))) return i;
    }
    return -1;
}
