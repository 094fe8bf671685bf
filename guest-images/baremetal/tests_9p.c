/* virtio-9p conformance and a misbehaving 9P driver, over the legacy PCI
 * transport, against a directory tests/guest/run-guest-test --share made
 * on the host (minikvm --share DIR,tag=TAG; QEMU -fsdev local,...,
 * security_model=none -device virtio-9p-pci,disable-modern=on,
 * mount_tag=TAG). The guest learns the tag as p9-tag= on its command line.
 *
 *   DIR/pattern.bin    307200 bytes of disk-pattern's host pattern (blk.h)
 *   DIR/sub/           an empty directory
 *   DIR/escape         a symbolic link to the runner's own directory, the
 *                      share's parent, outside the share (absolute target)
 *   DIR/escape-rel     a symbolic link to ".." (relative target)
 *   DIR/../outside.txt what the links point at: never to be reached
 *   DIR/d000..d001/f000..f004  a small tree for the benchmark modes
 *   DIR/written.bin    what p9-write makes: 20000 bytes of blk.h's guest
 *                      pattern (the runner checks them with --check-share)
 *
 * A read-only share (the runner adds p9-ro=1) must refuse p9-write's
 * create and an open for writing with EROFS.
 *
 * Runs where the VMM has the device; elsewhere the tests skip. p9-malformed
 * and p9-short-chain check minikvm's documented answers to a broken driver
 * (QEMU takes a wrong size field at its word, and stops the whole device
 * for a chain without a header): minikvm only, they skip under QEMU. */
#include "blk.h"
#include "clock.h"
#include "cpu.h"
#include "p9.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

#define ON_MINIKVM (boot_info.kind == BOOT_LINUX)
#define PATTERN_FILE "pattern.bin"
#define PATTERN_BYTES 307200u
#define ROOT_FID 1u
#define S_IFMT_ 0170000u
#define S_IFREG_ 0100000u
#define S_IFDIR_ 0040000u
#define S_IFLNK_ 0120000u

static const uint32_t ring_features = 1u << P9_F_MOUNT_TAG | 1u << VIRTIO_F_RING_EVENT_IDX;

#define NEED_P9()                                                                              \
    do {                                                                                       \
        if (!p9_find()) return skip("no virtio-9p (run minikvm with --share DIR,tag=TAG)"); \
    } while (0)

/* A synchronous helper's answer that must be a success. */
#define OK(call, what)                                                                   \
    do {                                                                                 \
        const int result_ = (call);                                                      \
        if (result_ == P9_FAILED) return false;                                          \
        CHECK(result_ >= 0, "%s: Rlerror %d, want success", what, -result_);             \
    } while (0)

/* A synchronous helper's answer that must be Rlerror(errno_). */
#define ERR(call, errno_, what)                                                             \
    do {                                                                                    \
        const int result_ = (call);                                                         \
        if (result_ == P9_FAILED) return false;                                             \
        CHECK(result_ == -(errno_), "%s: answer %d, want Rlerror %d", what, result_, errno_); \
    } while (0)

/* A request on a fid the server does not know: an Rlerror (minikvm: EBADF,
 * as its server documents; QEMU answers ENOENT). */
#define ERR_NO_FID(call, what)                                                                       \
    do {                                                                                             \
        const int result_ = (call);                                                                  \
        if (result_ == P9_FAILED) return false;                                                      \
        CHECK(result_ < 0, "%s: answer %d, want an Rlerror", what, result_);                         \
        if (ON_MINIKVM) CHECK(result_ == -P9_EBADF, "%s: Rlerror %d, want EBADF", what, -result_); \
    } while (0)

/* ---- p9-identity --------------------------------------------------------------- */

static bool test_p9_identity(void) {
    NEED_P9();
    const struct pci_address a = p9_dev.dev.pci;
    CHECK(pci_read8(a, PCI_REVISION) == 0, "revision %u, want 0", pci_read8(a, PCI_REVISION));
    CHECK(pci_read16(a, PCI_SUBSYSTEM_VENDOR_ID) == VIRTIO_PCI_VENDOR, "subsystem vendor 0x%x",
          pci_read16(a, PCI_SUBSYSTEM_VENDOR_ID));
    CHECK(pci_read16(a, PCI_SUBSYSTEM_ID) == 9, "subsystem ID %u, want 9 (9P transport)",
          pci_read16(a, PCI_SUBSYSTEM_ID));
    CHECK(p9_dev.dev.pin == 1, "interrupt pin %u, want 1 (INTA#)", p9_dev.dev.pin);
    if (ON_MINIKVM) {
        const uint32_t class_code = pci_read32(a, PCI_REVISION) >> 8;
        CHECK(class_code == 0x00ff00, "class 0x%06x, want 0x00ff00 (unclassified, other)", class_code);
        CHECK(p9_dev.dev.irq == 15 + a.device, "interrupt line %u, want GSI 15 + slot %u", p9_dev.dev.irq, a.device);
    }
    vp_reset(&p9_dev.dev);
    const uint32_t offered = vp_device_features(&p9_dev.dev);
    CHECK(offered & (1u << P9_F_MOUNT_TAG), "MOUNT_TAG not offered (features 0x%x)", offered);
    if (ON_MINIKVM)
        CHECK(offered == (ring_features | 1u << VIRTIO_F_RING_INDIRECT_DESC),
              "features 0x%x, want MOUNT_TAG|INDIRECT_DESC|EVENT_IDX", offered);
    const uint16_t size = vp_queue_size(&p9_dev.dev, P9_QUEUE);
    CHECK(size == 128, "request queue size %u, want 128", size);
    CHECK(vp_queue_size(&p9_dev.dev, 1) == 0, "a second queue exists");
    info("00:%02x.0 I/O 0x%x+%u, INTA# -> GSI %u, features 0x%x, queue size %u", a.device, p9_dev.dev.io,
         p9_dev.dev.bar_size, p9_dev.dev.irq, offered, size);
    return true;
}

/* ---- p9-tag ------------------------------------------------------------------------ */

static bool test_p9_tag(void) {
    NEED_P9();
    if (!p9_start(ring_features)) return false;
    CHECK(p9_dev.features & (1u << P9_F_MOUNT_TAG), "MOUNT_TAG not negotiated");
    char tag[300];
    const uint16_t len = p9_config_tag(tag, sizeof tag);
    CHECK(len > 0 && len < sizeof tag, "tag length %u", len);
    CHECK(strlen(tag) == len, "tag of %u bytes holds a NUL at %u", len, (unsigned)strlen(tag));
    CHECK(p9_dev.dev.bar_size >= VIRTIO_PCI_CONFIG + 2u + len, "BAR0 is %u bytes, the configuration needs %u",
          p9_dev.dev.bar_size, VIRTIO_PCI_CONFIG + 2u + len);
    char want[300];
    if (cmdline_value("p9-tag", want, sizeof want))
        CHECK(strcmp(tag, want) == 0, "tag \"%s\", the runner gave \"%s\"", tag, want);
    /* The same bytes read again, at the same widths: nothing moves. */
    char again[300];
    CHECK(p9_config_tag(again, sizeof again) == len && strcmp(again, tag) == 0, "the tag reads differently twice");
    info("mount tag \"%s\" (%u bytes)", tag, len);
    return true;
}

/* ---- p9-session ---------------------------------------------------------------------- */

static bool check_bytes(const uint8_t* buf, uint64_t offset, uint32_t len) {
    const int64_t bad = blk_pattern_check(buf, offset, len, BLK_PATTERN_HOST);
    CHECK(bad < 0, "byte %llu of " PATTERN_FILE " reads 0x%02x, not the host pattern's",
          (unsigned long long)(offset + (uint64_t)(bad < 0 ? 0 : bad)), buf[bad < 0 ? 0 : bad]);
    return true;
}

static bool test_p9_session(void) {
    NEED_P9();
    if (!p9_start(ring_features)) return false;
    OK(p9_version(P9_MSIZE), "Tversion");
    CHECK(p9_dev.msize == P9_MSIZE, "Rversion msize %u, want %u", p9_dev.msize, P9_MSIZE);
    struct p9_qid root;
    OK(p9_attach(ROOT_FID, &root), "Tattach");
    CHECK(root.type & P9_QID_DIR, "the root's qid type is 0x%x, not a directory", root.type);

    const char* names[] = {PATTERN_FILE};
    struct p9_qid walked;
    int n = p9_walk(ROOT_FID, 2, names, 1, &walked);
    if (n == P9_FAILED) return false;
    CHECK(n == 1, "Twalk to " PATTERN_FILE ": answer %d, want 1 qid", n);
    CHECK(walked.type == 0, "qid type 0x%x for a regular file", walked.type);
    CHECK(walked.path != root.path, "the file has the root's qid path");

    struct p9_attr attr;
    OK(p9_getattr(2, &attr), "Tgetattr");
    CHECK((attr.valid & P9_GETATTR_BASIC) == P9_GETATTR_BASIC, "Rgetattr valid 0x%llx, not BASIC",
          (unsigned long long)attr.valid);
    CHECK(p9_qid_equal(&attr.qid, &walked), "Rgetattr's qid differs from Rwalk's");
    CHECK((attr.mode & S_IFMT_) == S_IFREG_, "mode 0%o, not a regular file", attr.mode);
    CHECK(attr.size == PATTERN_BYTES, "size %llu, the runner wrote %u", (unsigned long long)attr.size, PATTERN_BYTES);
    struct p9_attr root_attr;
    OK(p9_getattr(ROOT_FID, &root_attr), "Tgetattr of the root");
    CHECK((root_attr.mode & S_IFMT_) == S_IFDIR_ && p9_qid_equal(&root_attr.qid, &root), "the root: mode 0%o",
          root_attr.mode);

    struct p9_qid opened;
    OK(p9_lopen(2, 0 /* O_RDONLY */, &opened), "Tlopen");
    CHECK(p9_qid_equal(&opened, &walked), "Rlopen's qid differs from Rwalk's");

    /* The file in 128 KiB reads (the last one short, then end of file),
     * then in one read of msize - 11. */
    uint8_t* data = alloc_zeroed(PATTERN_BYTES + 4096, 4096);
    uint64_t offset = 0;
    for (;;) {
        const int got = p9_read(2, offset, 128u << 10, data + offset);
        if (got == P9_FAILED) return false;
        CHECK(got >= 0, "Tread at %llu: Rlerror %d", (unsigned long long)offset, -got);
        const uint64_t want = PATTERN_BYTES - offset < (128u << 10) ? PATTERN_BYTES - offset : (128u << 10);
        CHECK((uint64_t)got == want, "Tread of 131072 at %llu: %d bytes, want %llu", (unsigned long long)offset, got,
              (unsigned long long)want);
        if (got == 0) break;
        offset += (uint64_t)got;
    }
    if (!check_bytes(data, 0, PATTERN_BYTES)) return false;
    memset(data, 0, PATTERN_BYTES);
    const int whole = p9_read(2, 0, P9_MSIZE - P9_READ_HEADER, data);
    if (whole == P9_FAILED) return false;
    CHECK(whole == (int)PATTERN_BYTES, "Tread of msize - 11 at 0: %d bytes, want %u", whole, PATTERN_BYTES);
    if (!check_bytes(data, 0, PATTERN_BYTES)) return false;
    /* An odd offset and count. */
    const int odd = p9_read(2, 4097, 1001, data);
    if (odd == P9_FAILED) return false;
    CHECK(odd == 1001, "Tread of 1001 at 4097: %d bytes", odd);
    if (!check_bytes(data, 4097, 1001)) return false;

    OK(p9_clunk(2), "Tclunk");
    ERR_NO_FID(p9_getattr(2, &attr), "Tgetattr of a clunked fid");
    ERR_NO_FID(p9_read(2, 0, 16, data), "Tread of a clunked fid");
    OK(p9_clunk(ROOT_FID), "Tclunk of the root");
    info("Tversion msize %u, Tattach, Twalk, Tgetattr (size %llu), Tlopen, Tread of %u bytes matched, Tclunk",
         p9_dev.msize, (unsigned long long)attr.size, PATTERN_BYTES);
    return true;
}

/* ---- p9-in-flight: many requests at once, answered by tag -------------------------- */

#define FLIGHT_FIDS 8u
#define FLIGHT_READS 48u
#define FLIGHT_READ_BYTES 6144u

/* Posts n requests, kicks once, waits for all; every reply must be of type
 * `want` for its own tag. */
static bool all_at_once(struct p9_req** reqs, unsigned n, uint8_t want, const char* what) {
    for (unsigned i = 0; i < n; ++i) CHECK(p9_post(reqs[i]), "%s: queue full at %u", what, i);
    p9_kick();
    for (unsigned i = 0; i < n; ++i) {
        CHECK(p9_wait(reqs[i], 2000), "%s: request %u of %u (tag %u) not answered in 2 s%s%s", what, i, n,
              reqs[i]->tag, p9_dev.vq.device_error ? ": " : "", p9_dev.vq.device_error ? p9_dev.vq.device_error : "");
        const int result = p9_check_reply(reqs[i], want);
        if (result == P9_FAILED) return false;
        CHECK(result == 0, "%s: request %u (tag %u): Rlerror %d", what, i, reqs[i]->tag, -result);
    }
    return true;
}

static bool test_p9_in_flight(void) {
    NEED_P9();
    if (!p9_session(ring_features, ROOT_FID, 0)) return false;
    struct p9_req* reqs[FLIGHT_READS];
    for (unsigned i = 0; i < FLIGHT_READS; ++i) reqs[i] = p9_req_new(64, FLIGHT_READ_BYTES + P9_READ_HEADER);
    /* Eight walks at once (independent: each from the root), then eight
     * opens, then 48 reads spread over the eight fids, then eight clunks. */
    const char* names[] = {PATTERN_FILE};
    for (unsigned i = 0; i < FLIGHT_FIDS; ++i) p9_build_walk(reqs[i], (uint16_t)(100 + i), ROOT_FID, 10 + i, names, 1);
    if (!all_at_once(reqs, FLIGHT_FIDS, P9_RWALK, "8 Twalks")) return false;
    for (unsigned i = 0; i < FLIGHT_FIDS; ++i) p9_build_lopen(reqs[i], (uint16_t)(200 + i), 10 + i, 0);
    if (!all_at_once(reqs, FLIGHT_FIDS, P9_RLOPEN, "8 Tlopens")) return false;
    for (unsigned i = 0; i < FLIGHT_READS; ++i)
        p9_build_read(reqs[i], (uint16_t)(300 + i), 10 + i % FLIGHT_FIDS, (uint64_t)i * FLIGHT_READ_BYTES,
                      FLIGHT_READ_BYTES);
    if (!all_at_once(reqs, FLIGHT_READS, P9_RREAD, "48 Treads")) return false;
    for (unsigned i = 0; i < FLIGHT_READS; ++i) {
        struct p9_in in;
        p9_in_init(&in, reqs[i]);
        const uint32_t count = p9_get32(&in);
        CHECK(count == FLIGHT_READ_BYTES && in.at + count == in.len, "Tread %u: count %u, reply %u bytes", i, count,
              in.len);
        if (!check_bytes(in.p + in.at, (uint64_t)i * FLIGHT_READ_BYTES, count)) return false;
    }
    for (unsigned i = 0; i < FLIGHT_FIDS; ++i) p9_build_clunk(reqs[i], (uint16_t)(400 + i), 10 + i);
    if (!all_at_once(reqs, FLIGHT_FIDS, P9_RCLUNK, "8 Tclunks")) return false;
    info("8 walks, 8 opens, 48 reads of %u bytes and 8 clunks, each batch in flight at once", FLIGHT_READ_BYTES);
    return true;
}

/* ---- p9-malformed (minikvm only) ---------------------------------------------------- */

/* A Tgetattr of the root whose size field says `size` instead of its 19
 * bytes: Rlerror(EINVAL) for its tag. */
static bool wrong_size(uint32_t size) {
    struct p9_req* r = p9_dev.sync;
    p9_build_getattr(r, 77, ROOT_FID);
    for (unsigned i = 0; i < 4; ++i) r->tx[i] = (uint8_t)(size >> (8 * i));
    CHECK(p9_post(r), "queue full");
    p9_kick();
    CHECK(p9_wait(r, 2000), "a size field of %u for 19 bytes: no answer in 2 s", size);
    const int result = p9_check_reply(r, P9_RGETATTR);
    if (result == P9_FAILED) return false;
    CHECK(result == -P9_EINVAL, "a size field of %u for 19 bytes: answer %d, want Rlerror(EINVAL)", size, result);
    return true;
}

static bool still_works(const char* after) {
    struct p9_attr attr;
    const int result = p9_getattr(ROOT_FID, &attr);
    if (result == P9_FAILED) return false;
    CHECK(result == 0 && (attr.mode & S_IFMT_) == S_IFDIR_, "after %s: Tgetattr of the root answered %d", after,
          result);
    CHECK(!(vp_status(&p9_dev.dev) & VIRTIO_STATUS_NEEDS_RESET), "after %s: DEVICE_NEEDS_RESET", after);
    return true;
}

static bool test_p9_malformed(void) {
    if (!ON_MINIKVM) return skip("checks minikvm's answer to a wrong size field; QEMU takes the field at its word");
    NEED_P9();
    if (!p9_session(ring_features, ROOT_FID, 0)) return false;
    if (!wrong_size(23) || !still_works("a size field too large")) return false;
    if (!wrong_size(18) || !still_works("a size field too small")) return false;
    return true;
}

/* ---- p9-short-chain (minikvm only) --------------------------------------------------- */

/* A chain with `readable` request bytes (fewer than a header) and 64
 * bytes of room filled with 0xa5: used length 0, nothing written. */
static bool short_chain(uint32_t readable) {
    struct p9_req* r = p9_dev.sync;
    p9_build_clunk(r, 88, ROOT_FID); /* what the device must not act on */
    memset(r->rx, 0xa5, 64);
    CHECK(p9_post_raw(r, readable, 64), "queue full");
    p9_kick();
    CHECK(p9_wait(r, 2000), "a chain of %u request bytes: not completed in 2 s", readable);
    CHECK(r->used_len == 0, "a chain of %u request bytes: used length %u, want 0", readable, r->used_len);
    for (unsigned i = 0; i < 64; ++i)
        CHECK(r->rx[i] == 0xa5, "a chain of %u request bytes: reply byte %u written (0x%02x)", readable, i, r->rx[i]);
    return true;
}

static bool test_p9_short_chain(void) {
    if (!ON_MINIKVM) return skip("checks minikvm's answer to a chain without a header; QEMU stops the device");
    NEED_P9();
    if (!p9_session(ring_features, ROOT_FID, 0)) return false;
    if (!short_chain(4) || !still_works("a chain of 4 request bytes")) return false;
    if (!short_chain(6) || !still_works("a chain of 6 request bytes")) return false;
    return true;
}

/* ---- p9-walk-dotdot ---------------------------------------------------------------- */

static bool test_p9_walk_dotdot(void) {
    NEED_P9();
    struct p9_qid root;
    if (!p9_session(ring_features, ROOT_FID, &root)) return false;
    struct p9_qid q[3];
    const char* up[] = {".."};
    int n = p9_walk(ROOT_FID, 2, up, 1, q);
    if (n == P9_FAILED) return false;
    CHECK(n == 1, "Twalk .. from the root: answer %d, want 1 qid", n);
    CHECK(p9_qid_equal(&q[0], &root), "Twalk .. from the root: qid path 0x%llx, the root's is 0x%llx",
          (unsigned long long)q[0].path, (unsigned long long)root.path);
    struct p9_attr attr;
    OK(p9_getattr(2, &attr), "Tgetattr after ..");
    CHECK(p9_qid_equal(&attr.qid, &root), "the fid walked to .. is not the root");

    const char* up_up[] = {"..", ".."};
    n = p9_walk(2, 3, up_up, 2, q);
    if (n == P9_FAILED) return false;
    CHECK(n == 2 && p9_qid_equal(&q[0], &root) && p9_qid_equal(&q[1], &root), "Twalk .. .. from the root: %d qids", n);

    const char* down_up[] = {"sub", "..", ".."};
    n = p9_walk(ROOT_FID, 4, down_up, 3, q);
    if (n == P9_FAILED) return false;
    CHECK(n == 3, "Twalk sub .. ..: answer %d, want 3 qids", n);
    CHECK((q[0].type & P9_QID_DIR) && !p9_qid_equal(&q[0], &root), "sub: qid type 0x%x", q[0].type);
    CHECK(p9_qid_equal(&q[1], &root) && p9_qid_equal(&q[2], &root), "sub .. ..: not back at the root");
    /* Where it ended, the share's files are: still the root. */
    const char* file[] = {PATTERN_FILE};
    n = p9_walk(4, 5, file, 1, q);
    if (n == P9_FAILED) return false;
    CHECK(n == 1 && q[0].type == 0, "Twalk " PATTERN_FILE " from sub/../..: answer %d", n);
    info(".. from the root stays at the root (qid path 0x%llx)", (unsigned long long)root.path);
    return true;
}

/* ---- p9-walk-symlink ---------------------------------------------------------------- */

static bool walk_stops_at_link(const char* link) {
    const char* names[] = {link, "outside.txt"};
    struct p9_qid q[2];
    const int n = p9_walk(ROOT_FID, 20, names, 2, q);
    if (n == P9_FAILED) return false;
    /* 9P's walk(5): a walk that fails after the first name answers the
     * qids it got, and newfid is not made. */
    CHECK(n == 1, "Twalk %s/outside.txt: answer %d, want 1 qid (the link; stop there)", link, n);
    CHECK(q[0].type == P9_QID_SYMLINK, "%s: qid type 0x%x, want 0x%x (symbolic link)", link, q[0].type,
          P9_QID_SYMLINK);
    struct p9_attr attr;
    ERR_NO_FID(p9_getattr(20, &attr), "Tgetattr of the fid a partial walk named");
    return true;
}

static bool test_p9_walk_symlink(void) {
    NEED_P9();
    if (!p9_session(ring_features, ROOT_FID, 0)) return false;
    if (!walk_stops_at_link("escape") || !walk_stops_at_link("escape-rel")) return false;
    /* The link itself can be walked to and looked at: a symbolic link. */
    const char* link[] = {"escape"};
    struct p9_qid q;
    int n = p9_walk(ROOT_FID, 21, link, 1, &q);
    CHECK(n == 1 && q.type == P9_QID_SYMLINK, "Twalk escape: answer %d, qid type 0x%x", n, q.type);
    struct p9_attr attr;
    OK(p9_getattr(21, &attr), "Tgetattr of the link");
    CHECK((attr.mode & S_IFMT_) == S_IFLNK_, "the link's mode is 0%o, not a symbolic link", attr.mode);
    /* Opening it does not open what it points at. */
    struct p9_qid opened;
    ERR(p9_lopen(21, 0, &opened), P9_ELOOP, "Tlopen of the link");
    return true;
}

/* ---- p9-write -------------------------------------------------------------------- */

#define WRITTEN_FILE "written.bin"
#define WRITE_BYTES 20000u
#define WRITE_FID 30u

/* Posts r as a chain cut at the given places, waits, and checks the reply
 * is `want`. */
static bool split_call(struct p9_req* r, const uint32_t read_cuts[2], const uint32_t write_cuts[2], uint8_t want,
                       const char* what) {
    CHECK(p9_post_split(r, read_cuts, write_cuts), "%s: queue full", what);
    p9_kick();
    CHECK(p9_wait(r, 2000), "%s: no answer in 2 s", what);
    const int result = p9_check_reply(r, want);
    if (result == P9_FAILED) return false;
    CHECK(result == 0, "%s: Rlerror %d", what, -result);
    return true;
}

/* A read-only share: no file made, none opened for writing. */
static bool refuses_writes(void) {
    struct p9_qid qid;
    ERR(p9_lcreate(WRITE_FID, WRITTEN_FILE, P9_RDWR | P9_CREATE_TRUNC, 0644, &qid), P9_EROFS,
        "Tlcreate on a read-only share");
    const char* names[] = {PATTERN_FILE};
    const int n = p9_walk(ROOT_FID, WRITE_FID + 1, names, 1, &qid);
    if (n == P9_FAILED) return false;
    CHECK(n == 1, "Twalk to " PATTERN_FILE ": answer %d", n);
    ERR(p9_lopen(WRITE_FID + 1, P9_RDWR, &qid), P9_EROFS, "Tlopen for writing on a read-only share");
    info("Tlcreate and Tlopen for writing refused with EROFS");
    return true;
}

static bool test_p9_write(void) {
    NEED_P9();
    if (!p9_session(ring_features, ROOT_FID, 0)) return false;
    struct p9_qid qid;
    OK(p9_walk(ROOT_FID, WRITE_FID, 0, 0, &qid), "Twalk of no names (a second fid for the root)");
    char ro[4];
    if (cmdline_value("p9-ro", ro, sizeof ro)) return refuses_writes();

    OK(p9_lcreate(WRITE_FID, WRITTEN_FILE, P9_RDWR | P9_CREATE_TRUNC, 0644, &qid), "Tlcreate " WRITTEN_FILE);
    CHECK(qid.type == 0, "Rlcreate: qid type 0x%x for a regular file", qid.type);
    /* Twrite with its 23-byte head cut after 5 bytes and its data cut
     * again 4 KiB in; the reply's room cut inside its 11 bytes. */
    struct p9_req* w = p9_req_new(WRITE_BYTES + 64, 64);
    uint8_t* data = alloc_zeroed(WRITE_BYTES, 64);
    blk_pattern_fill(data, 0, WRITE_BYTES, BLK_PATTERN_GUEST);
    p9_build_write(w, 0x51, WRITE_FID, 0, data, WRITE_BYTES);
    if (!split_call(w, (const uint32_t[2]){5, 4099}, (const uint32_t[2]){3, 9}, P9_RWRITE, "Twrite")) return false;
    struct p9_in in;
    p9_in_init(&in, w);
    const uint32_t written = p9_get32(&in);
    CHECK(written == WRITE_BYTES && in.at == in.len, "Rwrite: count %u of %u, reply of %u bytes", written,
          WRITE_BYTES, in.len);

    /* Read it back past its end, the reply's 11-byte head cut after 5
     * bytes and its data 4 KiB later. */
    struct p9_req* r = p9_req_new(64, WRITE_BYTES + P9_READ_HEADER + 100);
    p9_build_read(r, 0x52, WRITE_FID, 0, WRITE_BYTES + 100);
    if (!split_call(r, (const uint32_t[2]){2, 13}, (const uint32_t[2]){5, 4101}, P9_RREAD, "Tread")) return false;
    p9_in_init(&in, r);
    const uint32_t count = p9_get32(&in);
    CHECK(count == WRITE_BYTES && in.at + count == in.len, "Rread: count %u, want %u (reply of %u bytes)", count,
          WRITE_BYTES, in.len);
    const int64_t bad = blk_pattern_check(in.p + in.at, 0, count, BLK_PATTERN_GUEST);
    CHECK(bad < 0, "byte %lld read back differs from what was written", (long long)bad);
    struct p9_attr attr;
    OK(p9_getattr(WRITE_FID, &attr), "Tgetattr " WRITTEN_FILE);
    CHECK(attr.size == WRITE_BYTES, "size %llu after writing %u bytes", (unsigned long long)attr.size, WRITE_BYTES);
    OK(p9_clunk(WRITE_FID), "Tclunk");
    info("%u bytes written and read back through chains cut inside the 9P headers", WRITE_BYTES);
    return true;
}

const struct test p9_tests[] = {
    {"p9-identity", test_p9_identity, "virtio-9p PCI identity: IDs, INTA#, MOUNT_TAG offered, one queue of 128"},
    {"p9-tag", test_p9_tag, "the mount tag in the configuration (le16 length + bytes) is the one given"},
    {"p9-session", test_p9_session,
     "Tversion/Tattach/Twalk/Tgetattr/Tlopen/Tread/Tclunk on the runner's file, its bytes compared"},
    {"p9-in-flight", test_p9_in_flight, "walks, opens, 48 reads and clunks in flight at once, matched by tag"},
    {"p9-malformed", test_p9_malformed,
     "minikvm only: a size field that disagrees gets Rlerror(EINVAL), the device goes on"},
    {"p9-short-chain", test_p9_short_chain,
     "minikvm only: a chain of fewer than 7 request bytes completes with used length 0, the device goes on"},
    {"p9-walk-dotdot", test_p9_walk_dotdot, ".. from the root stays at the root (same qid)"},
    {"p9-walk-symlink", test_p9_walk_symlink,
     "a walk through a symbolic link out of the share stops at the link; the link opens with ELOOP"},
    {"p9-write", test_p9_write,
     "Tlcreate, Twrite and Tread through chains cut inside the 9P headers; a read-only share refuses with EROFS"},
};
const unsigned p9_test_count = ARRAY_SIZE(p9_tests);
