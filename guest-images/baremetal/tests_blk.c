/* virtio-blk conformance and a misbehaving block driver (virtio 1.2 section
 * 5.2 over the legacy PCI transport), against a disk image the runner
 * prepared on the host (tests/guest/disk-pattern) and checks afterwards:
 *
 *   sectors         bytes                  after the run
 *   0..2047         0..1 MiB               host pattern, untouched
 *   2048..2303      1 MiB + 128 KiB        guest pattern (blk-write)
 *   2304..2431      1.125 MiB + 64 KiB     guest pattern (blk-unaligned)
 *   4096..4351      2 MiB + 128 KiB        guest pattern (blk-queue-depth)
 *   6144..6271      3 MiB + 64 KiB         zeros (blk-write-zeroes)
 *   6400..6527      3.125 MiB + 64 KiB     zeros on minikvm (blk-discard: a punched hole)
 *   8192..end       4 MiB..                host pattern, untouched
 * The disk must have at least BLK_TEST_SECTORS sectors. Patterns: blk.h.
 *
 * Tests that check minikvm's own documented choices (exact features and
 * limits, what a malformed request gets, the log) skip under other VMMs,
 * which may answer a malformed request by stopping the device. */
#include "apic.h"
#include "blk.h"
#include "clock.h"
#include "cpu.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

#define BLK_TEST_SECTORS 16384u
#define WRITE_SECTOR 2048u
#define WRITE_SECTORS 256u
#define UNALIGNED_SECTOR 2304u
#define UNALIGNED_SECTORS 128u
#define QD_SECTOR 4096u
#define QD_DEPTH 32u
#define QD_REQUEST_SECTORS 8u /* 4 KiB */
#define ZEROES_SECTOR 6144u
#define DISCARD_SECTOR 6400u
#define ZERO_SECTORS 128u

#define ON_MINIKVM (boot_info.kind == BOOT_LINUX)

#define NEED_BLK()                                                                           \
    do {                                                                                     \
        if (!blk_find()) return skip("no virtio-blk (run minikvm with --disk path=FILE)"); \
    } while (0)

#define NEED_MINIKVM_BLK()                                                                              \
    do {                                                                                                \
        if (!ON_MINIKVM) return skip("checks minikvm's behaviour; not booted by minikvm");              \
        NEED_BLK();                                                                                     \
    } while (0)

static const uint32_t ring_features = 1u << VIRTIO_F_RING_EVENT_IDX | 1u << VIRTIO_F_RING_INDIRECT_DESC;

/* What the device offers: a driver that did not accept RO still gets IOERR for writes. */
static bool read_only_disk(void) { return (vp_device_features(&blk_dev.dev) >> BLK_F_RO) & 1; }

/* minikvm logs at most 5 request lines a second; the malformed-request
 * tests check every line, so they leave 220 ms between requests. */
static void pace_log(void) {
    if (ON_MINIKVM) delay_us(220000);
}

static bool start_rw(uint32_t wanted) {
    if (!blk_start(wanted)) return false;
    CHECK(blk_capacity() >= BLK_TEST_SECTORS, "capacity %llu sectors; the tests need %u",
          (unsigned long long)blk_capacity(), BLK_TEST_SECTORS);
    return true;
}

/* Reads [sector, +len) into buf as one request and checks status OK and
 * the used length (data + status). */
static bool read_ok(uint64_t sector, void* buf, uint32_t len) {
    uint32_t used = 0;
    const int status = blk_do(BLK_T_IN, sector, buf, len, true, &used);
    if (status < 0) return false;
    CHECK(status == BLK_S_OK, "read of %u bytes at sector %llu: status %d", len, (unsigned long long)sector, status);
    CHECK(used == len + 1, "read of %u bytes: used length %u, want %u (data + status)", len, used, len + 1);
    return true;
}

static bool write_ok(uint64_t sector, void* buf, uint32_t len) {
    uint32_t used = 0;
    const int status = blk_do(BLK_T_OUT, sector, buf, len, false, &used);
    if (status < 0) return false;
    CHECK(status == BLK_S_OK, "write of %u bytes at sector %llu: status %d", len, (unsigned long long)sector, status);
    CHECK(used == 1, "write: used length %u, want 1 (the status byte only)", used);
    return true;
}

static bool check_pattern(const void* buf, uint64_t sector, uint32_t len, uint64_t magic, const char* what) {
    const int64_t bad = blk_pattern_check(buf, sector * BLK_SECTOR, len, magic);
    CHECK(bad < 0, "%s: byte %lld of %u read at sector %llu is 0x%02x, not the %s pattern", what, (long long)bad, len,
          (unsigned long long)sector, ((const uint8_t*)buf)[bad < 0 ? 0 : bad],
          magic == BLK_PATTERN_HOST ? "host" : "guest");
    return true;
}

static bool check_zero(const uint8_t* buf, uint32_t len, const char* what) {
    for (uint32_t i = 0; i < len; ++i) CHECK(buf[i] == 0, "%s: byte %u is 0x%02x, not 0", what, i, buf[i]);
    return true;
}

/* ---- blk-identity ------------------------------------------------------------ */

static bool test_blk_identity(void) {
    NEED_BLK();
    const struct pci_address a = blk_dev.dev.pci;
    CHECK(pci_read8(a, PCI_REVISION) == 0, "revision %u, want 0", pci_read8(a, PCI_REVISION));
    CHECK(pci_read16(a, PCI_SUBSYSTEM_VENDOR_ID) == VIRTIO_PCI_VENDOR, "subsystem vendor 0x%x",
          pci_read16(a, PCI_SUBSYSTEM_VENDOR_ID));
    CHECK(pci_read16(a, PCI_SUBSYSTEM_ID) == 2, "subsystem ID %u, want 2 (block)", pci_read16(a, PCI_SUBSYSTEM_ID));
    const uint32_t class_code = pci_read32(a, PCI_REVISION) >> 8;
    CHECK(class_code == 0x010000, "class 0x%06x, want 0x010000 (mass storage, SCSI)", class_code);
    CHECK(blk_dev.dev.pin == 1, "interrupt pin %u, want 1 (INTA#)", blk_dev.dev.pin);
    CHECK(blk_dev.dev.bar_size >= VIRTIO_PCI_CONFIG + BLK_CFG_SIZE, "BAR0 is %u bytes, config needs %u",
          blk_dev.dev.bar_size, VIRTIO_PCI_CONFIG + BLK_CFG_SIZE);
    if (ON_MINIKVM)
        CHECK(blk_dev.dev.irq == 15 + a.device, "interrupt line %u, want GSI 15 + slot %u", blk_dev.dev.irq, a.device);
    CHECK(vp_queue_size(&blk_dev.dev, BLK_QUEUE) >= 128, "request queue size %u", vp_queue_size(&blk_dev.dev, 0));
    if (ON_MINIKVM) CHECK(vp_queue_size(&blk_dev.dev, 1) == 0, "a second queue exists without MQ");
    info("00:%02x.0 I/O 0x%x+%u, INTA# -> GSI %u, queue size %u", a.device, blk_dev.dev.io, blk_dev.dev.bar_size,
         blk_dev.dev.irq, vp_queue_size(&blk_dev.dev, BLK_QUEUE));
    return true;
}

/* ---- blk-features ------------------------------------------------------------ */

static bool test_blk_features(void) {
    NEED_BLK();
    vp_reset(&blk_dev.dev);
    const uint32_t offered = vp_device_features(&blk_dev.dev);
    const bool ro = (offered >> BLK_F_RO) & 1;
    CHECK(offered & (1u << BLK_F_FLUSH), "FLUSH not offered (0x%x)", offered);
    CHECK(offered & (1u << BLK_F_SEG_MAX), "SEG_MAX not offered (0x%x)", offered);
    CHECK(offered & (1u << BLK_F_BLK_SIZE), "BLK_SIZE not offered (0x%x)", offered);
    if (ON_MINIKVM) {
        /* virtio/virtio_blk.h: no GEOMETRY, TOPOLOGY, CONFIG_WCE; DISCARD
         * and WRITE_ZEROES exactly when writable, RO exactly when not. */
        uint32_t want = 1u << BLK_F_SIZE_MAX | 1u << BLK_F_SEG_MAX | 1u << BLK_F_BLK_SIZE | 1u << BLK_F_FLUSH |
                        ring_features;
        want |= ro ? 1u << BLK_F_RO : (1u << BLK_F_DISCARD | 1u << BLK_F_WRITE_ZEROES);
        CHECK(offered == want, "offers 0x%08x, want 0x%08x", offered, want);
    }
    /* Only offered bits stick in the driver features. */
    vp_set_status(&blk_dev.dev, VIRTIO_STATUS_ACKNOWLEDGE);
    vp_set_status(&blk_dev.dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    vp_set_driver_features(&blk_dev.dev, ~(1u << VIRTIO_F_BAD_FEATURE));
    const uint32_t all = vp_read32(&blk_dev.dev, VIRTIO_PCI_GUEST_FEATURES);
    CHECK(!(all & ~offered), "writing all-ones gives features 0x%x, offered 0x%x", all, offered);
    /* Each choice of ring features gives a working device. */
    const uint32_t choices[3] = {0, ring_features, 1u << BLK_F_FLUSH};
    static uint8_t sector[BLK_SECTOR];
    for (unsigned i = 0; i < 3; ++i) {
        if (!blk_start(choices[i])) return false;
        CHECK(blk_dev.features == (choices[i] & offered), "negotiated 0x%x", blk_dev.features);
        if (!read_ok(0, sector, sizeof sector)) return false;
    }
    vp_reset(&blk_dev.dev);
    info("device offers 0x%08x (%s)", offered, ro ? "read-only" : "read-write");
    return true;
}

/* ---- blk-config --------------------------------------------------------------- */

static bool test_blk_config(void) {
    NEED_BLK();
    vp_reset(&blk_dev.dev);
    const uint32_t offered = vp_device_features(&blk_dev.dev);
    const bool ro = (offered >> BLK_F_RO) & 1;
    const uint64_t capacity = blk_capacity();
    const uint32_t size_max = blk_config32(BLK_CFG_SIZE_MAX), seg_max = blk_config32(BLK_CFG_SEG_MAX);
    const uint32_t blk_size = blk_config32(BLK_CFG_BLK_SIZE);
    const uint32_t max_discard = blk_config32(BLK_CFG_MAX_DISCARD_SECTORS);
    const uint32_t max_discard_seg = blk_config32(BLK_CFG_MAX_DISCARD_SEG);
    const uint32_t discard_align = blk_config32(BLK_CFG_DISCARD_SECTOR_ALIGNMENT);
    const uint32_t max_wz = blk_config32(BLK_CFG_MAX_WRITE_ZEROES_SECTORS);
    const uint32_t max_wz_seg = blk_config32(BLK_CFG_MAX_WRITE_ZEROES_SEG);
    const uint8_t wz_unmap = vp_read8(&blk_dev.dev, VIRTIO_PCI_CONFIG + BLK_CFG_WRITE_ZEROES_MAY_UNMAP);
    CHECK(capacity > 0, "capacity 0");
    const uint16_t queue_size = vp_queue_size(&blk_dev.dev, BLK_QUEUE);
    if (offered & (1u << BLK_F_SEG_MAX))
        CHECK(seg_max >= 1 && seg_max <= (uint32_t)queue_size - 2, "seg_max %u with a %u-entry queue", seg_max,
              queue_size);
    if (offered & (1u << BLK_F_SIZE_MAX)) CHECK(size_max >= 4096, "size_max %u", size_max);
    if (offered & (1u << BLK_F_BLK_SIZE))
        CHECK(blk_size >= 512 && (blk_size & (blk_size - 1)) == 0, "blk_size %u is not a power of two >= 512",
              blk_size);
    if (offered & (1u << BLK_F_DISCARD))
        CHECK(max_discard > 0 && max_discard_seg > 0 && discard_align > 0, "discard limits %u/%u/%u", max_discard,
              max_discard_seg, discard_align);
    if (offered & (1u << BLK_F_WRITE_ZEROES))
        CHECK(max_wz > 0 && max_wz_seg > 0, "write-zeroes limits %u/%u", max_wz, max_wz_seg);
    if (ON_MINIKVM) {
        /* virtio/virtio_blk.h's limits. */
        CHECK(size_max == 1u << 20, "size_max %u, want 1 MiB", size_max);
        CHECK(seg_max == 254, "seg_max %u, want 254", seg_max);
        CHECK(blk_config32(16) == 0 && blk_config32(24) == 0 && blk_config32(28) == 0 && blk_config32(32) == 0,
              "geometry/topology/writeback fields not 0 without their features");
        if (ro) {
            CHECK(max_discard == 0 && max_discard_seg == 0 && discard_align == 0 && max_wz == 0 && max_wz_seg == 0 &&
                      wz_unmap == 0,
                  "read-only disk with discard/write-zeroes limits");
        } else {
            CHECK(max_discard == 1u << 22 && max_discard_seg == 16, "discard limits %u sectors x %u segments",
                  max_discard, max_discard_seg);
            CHECK(discard_align >= 8 && discard_align * 512 >= blk_size, "discard_sector_alignment %u", discard_align);
            CHECK(max_wz == 1u << 22 && max_wz_seg == 16 && wz_unmap == 1, "write-zeroes limits %u x %u, may_unmap %u",
                  max_wz, max_wz_seg, wz_unmap);
        }
        /* Every width agrees (a narrow read gives the field's bytes). */
        for (uint16_t off = 0; off < BLK_CFG_SIZE; off += 4) {
            const uint32_t dword = blk_config32(off);
            const uint32_t words = vp_read16(&blk_dev.dev, (uint16_t)(VIRTIO_PCI_CONFIG + off)) |
                                   (uint32_t)vp_read16(&blk_dev.dev, (uint16_t)(VIRTIO_PCI_CONFIG + off + 2)) << 16;
            uint32_t bytes = 0;
            for (unsigned i = 0; i < 4; ++i)
                bytes |= (uint32_t)vp_read8(&blk_dev.dev, (uint16_t)(VIRTIO_PCI_CONFIG + off + i)) << (8 * i);
            CHECK(dword == words && dword == bytes, "config at %u: dword 0x%x, words 0x%x, bytes 0x%x", off, dword,
                  words, bytes);
        }
        /* The configuration is read-only (no CONFIG_WCE): a write changes nothing. */
        vp_write32(&blk_dev.dev, VIRTIO_PCI_CONFIG + BLK_CFG_CAPACITY, 1);
        CHECK(blk_capacity() == capacity, "a config write changed capacity to %llu",
              (unsigned long long)blk_capacity());
    }
    /* The last sector is readable, the one after it is not: the capacity
     * is the image's size (its content: blk-read). */
    if (!blk_start(0)) return false;
    static uint8_t sector[BLK_SECTOR];
    if (!read_ok(capacity - 1, sector, sizeof sector)) return false;
    pace_log();
    CHECK(blk_do(BLK_T_IN, capacity, sector, sizeof sector, true, 0) == BLK_S_IOERR, "read past the end not IOERR");
    info("capacity %llu sectors, size_max %u, seg_max %u, blk_size %u, discard %u x %u align %u, write-zeroes %u x %u "
         "unmap %u",
         (unsigned long long)capacity, size_max, seg_max, blk_size, max_discard, max_discard_seg, discard_align, max_wz,
         max_wz_seg, wz_unmap);
    return true;
}

/* ---- blk-read: host-prepared data, byte-exact ---------------------------------- */

static bool test_blk_read(void) {
    NEED_BLK();
    if (!start_rw(ring_features)) return false;
    /* The whole disk in 1 MiB requests (each a single buffer). */
    const uint64_t capacity = blk_capacity();
    const uint32_t chunk = 1u << 20;
    uint8_t* buf = alloc_zeroed(chunk, 4096);
    for (uint64_t s = 0; s < capacity; s += chunk / BLK_SECTOR) {
        const uint32_t len = capacity - s < chunk / BLK_SECTOR ? (uint32_t)(capacity - s) * BLK_SECTOR : chunk;
        /* Regions earlier tests of this run may have written: not the host's. */
        if (s >= WRITE_SECTOR && s < 8192) continue;
        if (!read_ok(s, buf, len)) return false;
        if (!check_pattern(buf, s, len, BLK_PATTERN_HOST, "host data")) return false;
    }
    /* The same data through a three-buffer chain and an indirect table:
     * the device fills the buffers in chain order. */
    uint8_t* a = alloc_zeroed(512, 16);
    uint8_t* b = alloc_zeroed(2048, 16);
    uint8_t* c = alloc_zeroed(1536, 16);
    const struct virtq_buf three[3] = {{a, 512}, {b, 2048}, {c, 1536}};
    static struct blk_req r;
    for (int indirect = 0; indirect < 2; ++indirect) {
        memset(a, 0xaa, 512), memset(b, 0xaa, 2048), memset(c, 0xaa, 1536);
        CHECK(blk_add(&r, BLK_T_IN, 24, three, 3, true, indirect) >= 0, "queue full");
        blk_kick();
        CHECK(blk_wait(&r, 2000), "chained read not completed");
        CHECK(r.status == BLK_S_OK && r.used_len == 4097, "chained read: status %u used %u", r.status, r.used_len);
        if (!check_pattern(a, 24, 512, BLK_PATTERN_HOST, "chain buffer 1") ||
            !check_pattern(b, 25, 2048, BLK_PATTERN_HOST, "chain buffer 2") ||
            !check_pattern(c, 29, 1536, BLK_PATTERN_HOST, "chain buffer 3"))
            return false;
    }
    info("read %llu sectors of host data byte-exact", (unsigned long long)capacity);
    return true;
}

/* ---- blk-write: through the device, checked in the file by the runner ---------- */

static bool test_blk_write(void) {
    NEED_BLK();
    if (!start_rw(ring_features | 1u << BLK_F_FLUSH)) return false;
    if (read_only_disk()) return skip("read-only disk");
    const uint32_t len = WRITE_SECTORS * BLK_SECTOR;
    uint8_t* data = alloc_zeroed(len, 4096);
    blk_pattern_fill(data, (uint64_t)WRITE_SECTOR * BLK_SECTOR, len, BLK_PATTERN_GUEST);
    /* First half: one 64 KiB request. Second half: 16 sectors per request,
     * alternately a chain of two buffers and an indirect table of four. */
    if (!write_ok(WRITE_SECTOR, data, len / 2)) return false;
    static struct blk_req r;
    for (uint32_t s = WRITE_SECTORS / 2; s < WRITE_SECTORS; s += 16) {
        uint8_t* p = data + s * BLK_SECTOR;
        const bool indirect = (s / 16) & 1;
        const struct virtq_buf pieces[4] = {{p, 2048}, {p + 2048, 2048}, {p + 4096, 2048}, {p + 6144, 2048}};
        const struct virtq_buf halves[2] = {{p, 4096}, {p + 4096, 4096}};
        CHECK(blk_add(&r, BLK_T_OUT, WRITE_SECTOR + s, indirect ? pieces : halves, indirect ? 4 : 2, false, indirect) >=
                  0,
              "queue full");
        blk_kick();
        CHECK(blk_wait(&r, 2000) && r.status == BLK_S_OK && r.used_len == 1, "write at sector %u: status %u used %u",
              WRITE_SECTOR + s, r.status, r.used_len);
    }
    /* FLUSH: OK, one status byte. */
    uint32_t used = 0;
    const int flushed = blk_do(BLK_T_FLUSH, 0, 0, 0, false, &used);
    CHECK(flushed == BLK_S_OK && used == 1, "flush: status %d, used length %u", flushed, used);
    /* Read back through the device. */
    uint8_t* back = alloc_zeroed(len, 4096);
    if (!read_ok(WRITE_SECTOR, back, len)) return false;
    if (!check_pattern(back, WRITE_SECTOR, len, BLK_PATTERN_GUEST, "read back")) return false;
    /* The neighbours are untouched. */
    if (!read_ok(WRITE_SECTOR - 1, back, BLK_SECTOR)) return false;
    if (!check_pattern(back, WRITE_SECTOR - 1, BLK_SECTOR, BLK_PATTERN_HOST, "sector before")) return false;
    info("wrote and flushed %u bytes at sector %u", len, WRITE_SECTOR);
    return true;
}

/* ---- blk-unaligned: buffers at odd addresses and of odd sizes ------------------- */

/* Under cache=none (O_DIRECT) the host cannot use such buffers directly
 * and bounces them; the data must be the same. */
static bool test_blk_unaligned(void) {
    NEED_BLK();
    if (!start_rw(ring_features)) return false;
    if (read_only_disk()) return skip("read-only disk");
    const uint32_t len = UNALIGNED_SECTORS * BLK_SECTOR;
    uint8_t* raw = alloc_zeroed(len + 64, 4096);
    uint8_t* data = raw + 1; /* odd address */
    blk_pattern_fill(data, (uint64_t)UNALIGNED_SECTOR * BLK_SECTOR, len, BLK_PATTERN_GUEST);
    static struct blk_req r;
    /* Each 8 KiB piece in buffers of 100, 412, 3584 and 4096 bytes. */
    for (uint32_t s = 0; s < UNALIGNED_SECTORS; s += 16) {
        uint8_t* p = data + s * BLK_SECTOR;
        const struct virtq_buf bufs[4] = {{p, 100}, {p + 100, 412}, {p + 512, 3584}, {p + 4096, 4096}};
        CHECK(blk_add(&r, BLK_T_OUT, UNALIGNED_SECTOR + s, bufs, 4, false, false) >= 0, "queue full");
        blk_kick();
        CHECK(blk_wait(&r, 2000) && r.status == BLK_S_OK && r.used_len == 1, "unaligned write at %u: status %u",
              UNALIGNED_SECTOR + s, r.status);
    }
    uint8_t* back_raw = alloc_zeroed(len + 64, 4096);
    uint8_t* back = back_raw + 3;
    for (uint32_t s = 0; s < UNALIGNED_SECTORS; s += 16) {
        uint8_t* p = back + s * BLK_SECTOR;
        const struct virtq_buf bufs[3] = {{p, 7}, {p + 7, 4089}, {p + 4096, 4096}};
        CHECK(blk_add(&r, BLK_T_IN, UNALIGNED_SECTOR + s, bufs, 3, true, false) >= 0, "queue full");
        blk_kick();
        CHECK(blk_wait(&r, 2000) && r.status == BLK_S_OK && r.used_len == 8193, "unaligned read at %u: status %u used %u",
              UNALIGNED_SECTOR + s, r.status, r.used_len);
    }
    if (!check_pattern(back, UNALIGNED_SECTOR, len, BLK_PATTERN_GUEST, "unaligned read back")) return false;
    /* And host data into an odd buffer. */
    if (!read_ok(7, back, 4096) || !check_pattern(back, 7, 4096, BLK_PATTERN_HOST, "odd buffer")) return false;
    info("blk_size %u; %u bytes through unaligned buffers", blk_config32(BLK_CFG_BLK_SIZE), len);
    return true;
}

/* ---- blk-get-id --------------------------------------------------------------- */

static bool test_blk_get_id(void) {
    NEED_BLK();
    if (!blk_start(0)) return false;
    static char id[BLK_ID_BYTES + 1];
    memset(id, 0xaa, BLK_ID_BYTES);
    uint32_t used = 0;
    const int status = blk_do(BLK_T_GET_ID, 0, id, BLK_ID_BYTES, true, &used);
    if (status < 0) return false;
    CHECK(status == BLK_S_OK, "GET_ID status %d", status);
    CHECK(used == BLK_ID_BYTES + 1, "GET_ID used length %u, want 21", used);
    /* NUL-terminated unless 20 long, printable before; minikvm pads
     * with NULs (so the used length covers only bytes it wrote; QEMU
     * stops at the NUL). */
    size_t n = 0;
    while (n < BLK_ID_BYTES && id[n]) {
        CHECK(id[n] >= 0x20 && id[n] < 0x7f, "serial byte %zu is 0x%02x", n, (uint8_t)id[n]);
        n++;
    }
    if (ON_MINIKVM)
        for (size_t i = n; i < BLK_ID_BYTES; ++i) CHECK(id[i] == 0, "serial not NUL-padded at byte %zu", i);
    id[BLK_ID_BYTES] = '\0';
    info("serial \"%s\"", id);
    return true;
}

/* ---- blk-write-zeroes and blk-discard ------------------------------------------- */

/* Both segments in one request where the device's max_*_seg allows it,
 * else one request each. Returns the first status that is not OK. */
static int segments_request(uint32_t type, const struct blk_segment* segs, uint32_t* used) {
    static struct blk_req r;
    const uint32_t max_seg = blk_config32(type == BLK_T_DISCARD ? BLK_CFG_MAX_DISCARD_SEG : BLK_CFG_MAX_WRITE_ZEROES_SEG);
    const unsigned per_request = max_seg >= 2 ? 2 : 1;
    for (unsigned first = 0; first < 2; first += per_request) {
        const struct virtq_buf buf = {&segs[first], (uint32_t)(per_request * sizeof *segs)};
        if (blk_add(&r, type, 0, &buf, 1, false, false) < 0) return fail("queue full"), -1;
        blk_kick();
        if (!blk_wait(&r, 2000)) return fail("type %u not completed", type), -1;
        if (used) *used = r.used_len;
        if (r.status != BLK_S_OK) break;
    }
    return r.status;
}

static bool test_blk_write_zeroes(void) {
    NEED_BLK();
    if (!start_rw(ring_features | 1u << BLK_F_WRITE_ZEROES)) return false;
    if (!(blk_dev.features & (1u << BLK_F_WRITE_ZEROES))) return skip("WRITE_ZEROES not offered");
    if (read_only_disk()) return skip("read-only disk");
    /* Two segments: the first half plain, the second with UNMAP (minikvm
     * punches a hole; either way it must read as zeros). */
    static struct blk_segment segs[2];
    segs[0] = (struct blk_segment){ZEROES_SECTOR, ZERO_SECTORS / 2, 0};
    segs[1] = (struct blk_segment){ZEROES_SECTOR + ZERO_SECTORS / 2, ZERO_SECTORS / 2, BLK_SEG_F_UNMAP};
    uint32_t used = 0;
    const int status = segments_request(BLK_T_WRITE_ZEROES, segs, &used);
    if (status < 0) return false;
    CHECK(status == BLK_S_OK && used == 1, "WRITE_ZEROES: status %d used %u", status, used);
    const uint32_t len = ZERO_SECTORS * BLK_SECTOR;
    uint8_t* back = alloc_zeroed(len + BLK_SECTOR, 4096);
    memset(back, 0xaa, len + BLK_SECTOR);
    if (!read_ok(ZEROES_SECTOR, back, len + BLK_SECTOR)) return false;
    if (!check_zero(back, len, "after WRITE_ZEROES")) return false;
    return check_pattern(back + len, ZEROES_SECTOR + ZERO_SECTORS, BLK_SECTOR, BLK_PATTERN_HOST, "after the range");
}

static bool test_blk_discard(void) {
    NEED_BLK();
    if (!start_rw(ring_features | 1u << BLK_F_DISCARD)) return false;
    if (!(blk_dev.features & (1u << BLK_F_DISCARD))) return skip("DISCARD not offered");
    if (read_only_disk()) return skip("read-only disk");
    static struct blk_segment segs[2];
    segs[0] = (struct blk_segment){DISCARD_SECTOR, ZERO_SECTORS / 2, 0};
    segs[1] = (struct blk_segment){DISCARD_SECTOR + ZERO_SECTORS / 2, ZERO_SECTORS / 2, 0};
    uint32_t used = 0;
    const int status = segments_request(BLK_T_DISCARD, segs, &used);
    if (status < 0) return false;
    CHECK(status == BLK_S_OK && used == 1, "DISCARD: status %d used %u", status, used);
    /* Discarded data may read as anything (5.2.6.2); minikvm punches a
     * hole, so there it reads as zeros. */
    if (ON_MINIKVM) {
        const uint32_t len = ZERO_SECTORS * BLK_SECTOR;
        uint8_t* back = alloc_zeroed(len, 4096);
        memset(back, 0xaa, len);
        if (!read_ok(DISCARD_SECTOR, back, len)) return false;
        if (!check_zero(back, len, "after DISCARD")) return false;
    }
    return true;
}

/* ---- blk-readonly ------------------------------------------------------------- */

static bool test_blk_readonly(void) {
    NEED_BLK();
    if (!blk_start(0xffffffffu)) return false;
    if (!read_only_disk()) return skip("the disk is writable (--disk path=FILE,ro makes it read-only)");
    static uint8_t sector[BLK_SECTOR];
    blk_pattern_fill(sector, 0, sizeof sector, BLK_PATTERN_GUEST);
    uint32_t used = 0;
    const int status = blk_do(BLK_T_OUT, 0, sector, sizeof sector, false, &used);
    if (status < 0) return false;
    CHECK(status == BLK_S_IOERR, "write to a read-only disk: status %d, want IOERR", status);
    CHECK(used == 1, "refused write: used length %u, want 1", used);
    /* Flush is fine; the data is the host's still. */
    CHECK(blk_do(BLK_T_FLUSH, 0, 0, 0, false, 0) == BLK_S_OK, "flush on a read-only disk failed");
    if (!read_ok(0, sector, sizeof sector)) return false;
    return check_pattern(sector, 0, sizeof sector, BLK_PATTERN_HOST, "after the refused write");
}

/* ---- blk-malformed: every wrong request shape ------------------------------------ */

/* Submits `bufs` as `out` readable + `in` writable buffers, waits, and
 * checks the used length. The status (the last writable byte) is returned
 * through the caller's buffers. */
static bool malformed(const char* shape, const struct virtq_buf* bufs, unsigned out, unsigned in, uint32_t want_used) {
    static struct blk_req r;
    pace_log();
    CHECK(blk_add_raw(&r, bufs, out, in) >= 0, "%s: queue full", shape);
    blk_kick();
    CHECK(blk_wait(&r, 2000), "%s: not completed (status 0x%x%s%s)", shape, vp_status(&blk_dev.dev),
          blk_dev.vq.device_error ? ": " : "", blk_dev.vq.device_error ? blk_dev.vq.device_error : "");
    CHECK(r.used_len == want_used, "%s: used length %u, want %u", shape, r.used_len, want_used);
    CHECK(!(vp_status(&blk_dev.dev) & VIRTIO_STATUS_NEEDS_RESET), "%s: the device stopped", shape);
    return true;
}

static bool expect_status(const char* shape, uint8_t got, uint8_t want) {
    CHECK(got == want, "%s: status %u, want %u", shape, got, want);
    return true;
}

static bool test_blk_malformed(void) {
    NEED_MINIKVM_BLK();
    if (!start_rw(0)) return false;
    const uint64_t capacity = blk_capacity();
    static struct blk_header h;
    static uint8_t data[1024], status[4];

    /* Short header: 8 bytes. */
    h = (struct blk_header){BLK_T_IN, 0, 0};
    status[0] = BLK_S_NONE;
    struct virtq_buf b[4] = {{&h, 8}, {data, 512}, {status, 1}};
    if (!malformed("short header", b, 1, 2, 513) || !expect_status("short header", status[0], BLK_S_IOERR)) return false;

    /* The header in a writable buffer: no readable header at all. */
    status[0] = BLK_S_NONE;
    b[0] = (struct virtq_buf){&h, 16};
    if (!malformed("writable header", b, 0, 3, 529) || !expect_status("writable header", status[0], BLK_S_IOERR))
        return false;

    /* No status buffer: a read whose last writable byte is its data's. */
    memset(data, 0xaa, 512);
    if (!malformed("missing status", b, 1, 1, 512) || !expect_status("missing status", data[511], BLK_S_IOERR))
        return false;
    for (int i = 0; i < 511; ++i) CHECK(data[i] == 0, "missing status: data byte %d not zeroed under the used length", i);

    /* The status in a readable buffer: nothing writable, nothing written. */
    h.type = BLK_T_OUT;
    status[0] = BLK_S_NONE;
    if (!malformed("readable status", b, 3, 0, 0)) return false;
    CHECK(status[0] == BLK_S_NONE, "readable status: the device wrote into a readable buffer");

    /* A 4-byte status buffer on a write: 3 writable bytes too many. */
    memset(status, 0xaa, sizeof status);
    b[2] = (struct virtq_buf){status, 4};
    if (!malformed("4-byte status", b, 2, 1, 4) || !expect_status("4-byte status", status[3], BLK_S_IOERR)) return false;
    CHECK(status[0] == 0 && status[1] == 0 && status[2] == 0, "4-byte status: bytes before the status not zeroed");

    /* GET_ID with 19 bytes. */
    h = (struct blk_header){BLK_T_GET_ID, 0, 0};
    b[1] = (struct virtq_buf){data, 19};
    b[2] = (struct virtq_buf){status, 1};
    if (!malformed("short GET_ID", b, 1, 2, 20) || !expect_status("short GET_ID", status[0], BLK_S_IOERR)) return false;

    /* Data not a multiple of 512. */
    h = (struct blk_header){BLK_T_IN, 0, 0};
    b[1] = (struct virtq_buf){data, 1000};
    if (!malformed("1000-byte read", b, 1, 2, 1001) || !expect_status("1000-byte read", status[0], BLK_S_IOERR))
        return false;

    /* Ranges: sector * 512 overflowing 64 bits, the first sector past the
     * end, a request crossing the end. Reads get their data zeroed. */
    const struct {
        const char* shape;
        uint64_t sector;
        uint32_t len;
    } ranges[3] = {{"sector overflow", 0xffffffffffffffffull, 512},
                   {"sector past the end", capacity, 512},
                   {"request crossing the end", capacity - 1, 1024}};
    for (unsigned i = 0; i < 3; ++i) {
        h = (struct blk_header){BLK_T_IN, 0, ranges[i].sector};
        memset(data, 0xaa, sizeof data);
        b[1] = (struct virtq_buf){data, ranges[i].len};
        if (!malformed(ranges[i].shape, b, 1, 2, ranges[i].len + 1) ||
            !expect_status(ranges[i].shape, status[0], BLK_S_IOERR) ||
            !check_zero(data, ranges[i].len, ranges[i].shape))
            return false;
    }
    /* A write crossing the end changes nothing: the last sector is still
     * the host's. */
    h = (struct blk_header){BLK_T_OUT, 0, capacity - 1};
    blk_pattern_fill(data, 0, sizeof data, BLK_PATTERN_GUEST);
    b[1] = (struct virtq_buf){data, 1024};
    if (!malformed("write crossing the end", b, 2, 1, 1) ||
        !expect_status("write crossing the end", status[0], BLK_S_IOERR))
        return false;
    if (!read_ok(capacity - 1, data, 512) ||
        !check_pattern(data, capacity - 1, 512, BLK_PATTERN_HOST, "last sector after a refused write"))
        return false;
    info("11 malformed shapes: IOERR (or nothing written), the device running");
    return true;
}

/* ---- blk-malformed-segments: discard / write zeroes beyond the end ---------------- */

static bool test_blk_malformed_segments(void) {
    NEED_MINIKVM_BLK();
    if (!start_rw(1u << BLK_F_DISCARD | 1u << BLK_F_WRITE_ZEROES)) return false;
    const uint64_t capacity = blk_capacity();
    static struct blk_header h;
    static struct blk_segment seg[17];
    static uint8_t status;
    struct virtq_buf b[3] = {{&h, 16}, {seg, 16}, {&status, 1}};
    const struct {
        const char* shape;
        uint32_t type;
        struct blk_segment seg;
        unsigned count;
        uint8_t want;
    } cases[5] = {
        {"discard beyond the end", BLK_T_DISCARD, {capacity - 8, 16, 0}, 1, BLK_S_IOERR},
        {"write zeroes beyond the end", BLK_T_WRITE_ZEROES, {capacity, 1, 0}, 1, BLK_S_IOERR},
        {"17 discard segments", BLK_T_DISCARD, {0, 1, 0}, 17, BLK_S_IOERR},
        {"discard with UNMAP", BLK_T_DISCARD, {0, 1, BLK_SEG_F_UNMAP}, 1, BLK_S_UNSUPP},
        {"unknown segment flag", BLK_T_WRITE_ZEROES, {0, 1, 4}, 1, BLK_S_UNSUPP},
    };
    for (unsigned i = 0; i < 5; ++i) {
        h = (struct blk_header){cases[i].type, 0, 0};
        for (unsigned s = 0; s < cases[i].count; ++s) seg[s] = cases[i].seg;
        b[1].len = (uint32_t)(16 * cases[i].count);
        status = BLK_S_NONE;
        if (!malformed(cases[i].shape, b, 2, 1, 1) || !expect_status(cases[i].shape, status, cases[i].want))
            return false;
    }
    /* The last sectors are still the host's. */
    static uint8_t data[4096];
    if (!read_ok(capacity - 8, data, sizeof data) ||
        !check_pattern(data, capacity - 8, sizeof data, BLK_PATTERN_HOST, "end of disk after refused segments"))
        return false;
    return true;
}

/* ---- blk-unsupported: types the device does not serve ----------------------------- */

/* minikvm's choice: UNSUPP for all of them, whatever the chain's shape
 * (QEMU answers some shapes with IOERR or not at all). */
static bool test_blk_unsupported(void) {
    NEED_MINIKVM_BLK();
    if (!start_rw(0)) return false; /* no DISCARD / WRITE_ZEROES / FLUSH negotiated */
    static struct blk_header h;
    static uint8_t data[512], status;
    struct virtq_buf b[3] = {{&h, 16}, {data, 512}, {&status, 1}};
    /* SCSI_CMD (2, legacy), an unassigned type (7), GET_LIFETIME (10, not
     * offered), DISCARD and FLUSH without their features. */
    const uint32_t types[] = {BLK_T_SCSI_CMD, 7, 10, BLK_T_DISCARD, BLK_T_FLUSH};
    for (unsigned i = 0; i < ARRAY_SIZE(types); ++i) {
        h = (struct blk_header){types[i], 0, 0};
        status = BLK_S_NONE;
        if (!malformed("unsupported type", b, 1, 2, 513)) return false;
        CHECK(status == BLK_S_UNSUPP, "type %u: status %u, want UNSUPP", types[i], status);
    }
    return true;
}

/* ---- blk-queue-depth: 32 requests in flight, completed by interrupts ------------- */

/* `seen`: the interrupt count before the kick (an interrupt may come
 * before this is called). */
static bool wait_all(struct blk_req* reqs, unsigned n, unsigned seen, const char* what) {
    /* Consume used entries only after an interrupt says there are some:
     * a completion without its interrupt leaves us waiting, and fails. */
    unsigned done = 0;
    const uint64_t deadline = now_ns() + 3000000000ull;
    while (done < n) {
        while (blk_dev.queue_interrupts == seen) {
            CHECK(now_ns() < deadline, "%s: %u of %u completed, then no interrupt for 3 s (used index %u, ISR 0x%x)",
                  what, done, n, *blk_dev.vq.used_idx, vp_isr(&blk_dev.dev));
            cpu_relax();
        }
        seen = blk_dev.queue_interrupts;
        done += blk_reap();
        CHECK(!blk_dev.vq.device_error, "%s: %s", what, blk_dev.vq.device_error);
    }
    for (unsigned i = 0; i < n; ++i)
        CHECK(reqs[i].done && reqs[i].status == BLK_S_OK, "%s: request %u status %u", what, i, reqs[i].status);
    return true;
}

static bool test_blk_queue_depth(void) {
    NEED_BLK();
    if (!start_rw(0)) return false;
    if (read_only_disk()) return skip("read-only disk");
    const uint32_t req_len = QD_REQUEST_SECTORS * BLK_SECTOR, len = QD_DEPTH * req_len;
    uint8_t* data = alloc_zeroed(len, 4096);
    uint8_t* back = alloc_zeroed(len, 4096);
    blk_pattern_fill(data, (uint64_t)QD_SECTOR * BLK_SECTOR, len, BLK_PATTERN_GUEST);
    struct blk_req* reqs = alloc_zeroed(sizeof(struct blk_req) * QD_DEPTH, 16);
    blk_enable_irq();
    CHECK(!virtq_enable_interrupts(&blk_dev.vq), "used entries before any request");
    for (int pass = 0; pass < 2; ++pass) {
        const bool write = pass == 0;
        /* Every request available before one kick; in reverse sector order,
         * so the completion order is the device's business. */
        for (unsigned i = 0; i < QD_DEPTH; ++i) {
            const unsigned k = QD_DEPTH - 1 - i;
            const struct virtq_buf buf = {(write ? data : back) + k * req_len, req_len};
            CHECK(blk_add(&reqs[k], write ? BLK_T_OUT : BLK_T_IN, QD_SECTOR + k * QD_REQUEST_SECTORS, &buf, 1, !write,
                          false) >= 0,
                  "queue full at request %u", i);
        }
        const unsigned seen = blk_dev.queue_interrupts;
        blk_kick();
        if (!wait_all(reqs, QD_DEPTH, seen, write ? "32 writes" : "32 reads")) return false;
        for (unsigned i = 0; i < QD_DEPTH; ++i)
            CHECK(reqs[i].used_len == (write ? 1 : req_len + 1), "request %u used length %u", i, reqs[i].used_len);
    }
    if (!check_pattern(back, QD_SECTOR, len, BLK_PATTERN_GUEST, "32 in flight")) return false;
    CHECK(blk_dev.spurious_interrupts == 0, "%u interrupts with ISR 0", blk_dev.spurious_interrupts);
    info("2 x 32 requests in flight, %u queue interrupts through IOAPIC input %u (%s-triggered)",
         blk_dev.queue_interrupts, blk_dev.dev.irq, host_quirks.level_irq_unusable ? "edge" : "level");
    return true;
}

/* ---- blk-reset: with requests in flight, then re-initialization ------------------ */

static bool test_blk_reset(void) {
    NEED_BLK();
    const uint32_t req_len = 64 * 1024;
    uint8_t* bufs = alloc_zeroed(QD_DEPTH * req_len, 4096);
    struct blk_req* reqs = alloc_zeroed(sizeof(struct blk_req) * QD_DEPTH, 16);
    const uint32_t choices[3] = {ring_features, 0, 1u << VIRTIO_F_RING_INDIRECT_DESC};
    for (unsigned round = 0; round < 3; ++round) {
        if (!start_rw(choices[round])) return false;
        /* 32 reads of 64 KiB in flight, then reset at once. */
        for (unsigned i = 0; i < QD_DEPTH; ++i) {
            const struct virtq_buf buf = {bufs + i * req_len, req_len};
            CHECK(blk_add(&reqs[i], BLK_T_IN, (uint64_t)i * 128, &buf, 1, true, false) >= 0, "queue full");
        }
        blk_kick();
        CHECK(vp_reset(&blk_dev.dev), "status 0x%x after reset", vp_status(&blk_dev.dev));
        CHECK(vp_queue_pfn(&blk_dev.dev, BLK_QUEUE) == 0, "queue PFN 0x%x after reset",
              vp_queue_pfn(&blk_dev.dev, BLK_QUEUE));
        CHECK(vp_isr(&blk_dev.dev) == 0 || !ON_MINIKVM, "ISR set after reset");
        /* After the reset the device leaves our memory alone: the used
         * index and the buffers stay as they are. */
        const uint16_t used = *blk_dev.vq.used_idx;
        memset(bufs, 0x5a, req_len);
        delay_us(50000);
        CHECK(*blk_dev.vq.used_idx == used, "used index moved from %u to %u after reset", used, *blk_dev.vq.used_idx);
        for (uint32_t i = 0; i < req_len; ++i) CHECK(bufs[i] == 0x5a, "buffer written after reset");
        /* Re-initialized, it serves requests. */
        if (!start_rw(choices[(round + 1) % 3])) return false;
        if (!read_ok(128, bufs, 4096) || !check_pattern(bufs, 128, 4096, BLK_PATTERN_HOST, "after reset"))
            return false;
    }
    vp_reset(&blk_dev.dev);
    info("reset with 32 requests in flight, 3 times, each followed by a working re-initialization");
    return true;
}

/* ---- blk-broken-chain: a chain that breaks a ring rule stops the device ---------- */

static bool test_blk_broken_chain(void) {
    NEED_MINIKVM_BLK();
    if (!start_rw(0)) return false;
    blk_enable_irq();
    /* Header readable, data writable, then the status readable: a readable
     * buffer after a writable one (2.7.4.2), a ring rule, not a request
     * shape. The ring driver cannot build it, so descriptors by hand. */
    static struct blk_header h = {BLK_T_IN, 0, 0};
    static uint8_t data[512], status = BLK_S_NONE;
    struct virtq* vq = &blk_dev.vq;
    const uint16_t d0 = 0, d1 = 1, d2 = 2;
    vq->desc[d0] = (struct virtq_desc){virtq_dma(vq, &h), 16, VIRTQ_DESC_F_NEXT, d1};
    vq->desc[d1] = (struct virtq_desc){virtq_dma(vq, data), 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, d2};
    vq->desc[d2] = (struct virtq_desc){virtq_dma(vq, &status), 1, 0, 0};
    vq->avail_ring[0] = d0;
    vq->shadow_avail = 1;
    virtq_kick_prepare(vq);
    vp_notify(&blk_dev.dev, BLK_QUEUE);
    const uint64_t deadline = now_ns() + 500000000ull;
    while (!(vp_status(&blk_dev.dev) & VIRTIO_STATUS_NEEDS_RESET) && now_ns() < deadline) cpu_relax();
    CHECK(vp_status(&blk_dev.dev) & VIRTIO_STATUS_NEEDS_RESET, "status 0x%x: DEVICE_NEEDS_RESET not set",
          vp_status(&blk_dev.dev));
    const uint64_t irq_deadline = now_ns() + 500000000ull;
    while (blk_dev.config_interrupts == 0 && now_ns() < irq_deadline) cpu_relax();
    CHECK(blk_dev.config_interrupts > 0, "no configuration-change interrupt");
    CHECK(*vq->used_idx == 0 && status == BLK_S_NONE, "the broken chain was served");
    /* Reset recovers. */
    blk_cleanup_irq();
    CHECK(vp_reset(&blk_dev.dev), "status 0x%x after reset", vp_status(&blk_dev.dev));
    if (!start_rw(ring_features)) return false;
    static uint8_t sector[512];
    return read_ok(0, sector, sizeof sector) && check_pattern(sector, 0, sizeof sector, BLK_PATTERN_HOST, "recovered");
}

const struct test blk_tests[] = {
    {"blk-identity", test_blk_identity, "virtio-blk PCI identity: IDs, class, revision 0, INTA#, one queue"},
    {"blk-features", test_blk_features, "features offered (RO on a read-only disk), only offered bits stick"},
    {"blk-config", test_blk_config, "every config field: capacity, size_max, seg_max, blk_size, discard/zeroes limits"},
    {"blk-read", test_blk_read, "host-prepared data read byte-exact: whole disk, chains, indirect tables"},
    {"blk-write", test_blk_write, "OUT in one buffer, chains and indirect tables, FLUSH; read back"},
    {"blk-unaligned", test_blk_unaligned, "odd buffer addresses and sizes (bounced under cache=none)"},
    {"blk-get-id", test_blk_get_id, "GET_ID: the serial, NUL-padded, used length 21"},
    {"blk-write-zeroes", test_blk_write_zeroes, "WRITE_ZEROES with and without UNMAP reads back zeros"},
    {"blk-discard", test_blk_discard, "DISCARD of two segments (minikvm: reads back zeros)"},
    {"blk-readonly", test_blk_readonly, "read-only disk: RO offered, a write gets IOERR, data unchanged"},
    {"blk-malformed", test_blk_malformed,
     "short header, writable header, no status, readable status, wrong status size, bad ranges: IOERR"},
    {"blk-malformed-segments", test_blk_malformed_segments, "discard/write-zeroes segments beyond the end or malformed"},
    {"blk-unsupported", test_blk_unsupported, "legacy SCSI, unknown and unnegotiated types: UNSUPP"},
    {"blk-queue-depth", test_blk_queue_depth, "32 requests in flight at once, completed through interrupts"},
    {"blk-reset", test_blk_reset, "reset with 32 requests in flight; nothing touched after; re-initialization"},
    {"blk-broken-chain", test_blk_broken_chain, "a chain breaking a ring rule: DEVICE_NEEDS_RESET, reset recovers"},
};
const unsigned blk_test_count = ARRAY_SIZE(blk_tests);
