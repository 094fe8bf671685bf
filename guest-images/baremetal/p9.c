/* The guest's 9P2000.L client over virtio-9p; see p9.h. */
#include "p9.h"

#include "clock.h"
#include "cpu.h"
#include "runtime.h"
#include "tests.h"
#include "x86.h"

struct p9 p9_dev;

static void p9_cleanup(void) {
    /* The device must forget our ring (and finish every request into our
     * buffers) before the next test reuses that memory. */
    if (p9_dev.dev.io) vp_reset(&p9_dev.dev);
}

bool p9_find(void) {
    memset(&p9_dev, 0, sizeof p9_dev);
    if (!virtio_pci_find(VIRTIO_PCI_DEVICE_9P, &p9_dev.dev)) return false;
    test_cleanup = p9_cleanup;
    return true;
}

bool p9_start(uint32_t wanted) {
    struct p9* d = &p9_dev;
    d->features = vp_begin_init(&d->dev, wanted);
    CHECK(vp_setup_queue(&d->dev, &d->vq, P9_QUEUE, d->features), "request queue: no queue 0");
    vp_set_status(&d->dev, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK);
    CHECK(vp_status(&d->dev) == (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK),
          "status 0x%x after DRIVER_OK", vp_status(&d->dev));
    if (!d->sync) d->sync = p9_req_new(1024, P9_MSIZE);
    return true;
}

uint16_t p9_config_tag(char* out, uint32_t cap) {
    const uint16_t base = p9_dev.dev.config;
    const uint16_t len = vp_read16(&p9_dev.dev, (uint16_t)(base + P9_CFG_TAG_LEN));
    uint32_t i = 0;
    for (; i < len && i + 1 < cap; ++i) out[i] = (char)vp_read8(&p9_dev.dev, (uint16_t)(base + P9_CFG_TAG + i));
    out[i] = '\0';
    return len;
}

struct p9_req* p9_req_new(uint32_t tx_cap, uint32_t rx_cap) {
    struct p9_req* r = alloc_zeroed(sizeof *r, 16);
    r->tx = alloc_zeroed(tx_cap, 64);
    r->tx_cap = tx_cap;
    r->rx = alloc_zeroed(rx_cap, 4096);
    r->rx_cap = rx_cap;
    return r;
}

/* ---- Building messages ----------------------------------------------------- */

static void put(struct p9_req* r, uint64_t v, unsigned bytes) {
    if (r->tx_len + bytes > r->tx_cap) panic("9P message larger than its %u-byte buffer", r->tx_cap);
    for (unsigned i = 0; i < bytes; ++i) r->tx[r->tx_len++] = (uint8_t)(v >> (8 * i));
}

void p9_begin(struct p9_req* r, uint8_t type, uint16_t tag) {
    r->tx_len = 0;
    r->type = type;
    r->tag = tag;
    put(r, 0, 4); /* size: p9_end */
    put(r, type, 1);
    put(r, tag, 2);
}

void p9_put8(struct p9_req* r, uint8_t v) { put(r, v, 1); }
void p9_put16(struct p9_req* r, uint16_t v) { put(r, v, 2); }
void p9_put32(struct p9_req* r, uint32_t v) { put(r, v, 4); }
void p9_put64(struct p9_req* r, uint64_t v) { put(r, v, 8); }

void p9_put_str(struct p9_req* r, const char* s) {
    const size_t n = strlen(s);
    put(r, n, 2);
    for (size_t i = 0; i < n; ++i) put(r, (uint8_t)s[i], 1);
}

void p9_end(struct p9_req* r) {
    for (unsigned i = 0; i < 4; ++i) r->tx[i] = (uint8_t)(r->tx_len >> (8 * i));
}

void p9_build_version(struct p9_req* r, uint32_t msize, const char* version) {
    p9_begin(r, P9_TVERSION, P9_NOTAG);
    p9_put32(r, msize);
    p9_put_str(r, version);
    p9_end(r);
}

void p9_build_attach(struct p9_req* r, uint16_t tag, uint32_t fid) {
    p9_begin(r, P9_TATTACH, tag);
    p9_put32(r, fid);
    p9_put32(r, P9_NOFID); /* no authentication */
    p9_put_str(r, "root"); /* uname */
    p9_put_str(r, "");     /* aname: the share's root */
    p9_put32(r, 0);        /* n_uname */
    p9_end(r);
}

void p9_build_walk(struct p9_req* r, uint16_t tag, uint32_t fid, uint32_t newfid, const char* const* names,
                   unsigned n) {
    p9_begin(r, P9_TWALK, tag);
    p9_put32(r, fid);
    p9_put32(r, newfid);
    p9_put16(r, (uint16_t)n);
    for (unsigned i = 0; i < n; ++i) p9_put_str(r, names[i]);
    p9_end(r);
}

void p9_build_getattr(struct p9_req* r, uint16_t tag, uint32_t fid) {
    p9_begin(r, P9_TGETATTR, tag);
    p9_put32(r, fid);
    p9_put64(r, P9_GETATTR_BASIC);
    p9_end(r);
}

void p9_build_lopen(struct p9_req* r, uint16_t tag, uint32_t fid, uint32_t flags) {
    p9_begin(r, P9_TLOPEN, tag);
    p9_put32(r, fid);
    p9_put32(r, flags);
    p9_end(r);
}

void p9_build_read(struct p9_req* r, uint16_t tag, uint32_t fid, uint64_t offset, uint32_t count) {
    p9_begin(r, P9_TREAD, tag);
    p9_put32(r, fid);
    p9_put64(r, offset);
    p9_put32(r, count);
    p9_end(r);
}

void p9_build_clunk(struct p9_req* r, uint16_t tag, uint32_t fid) {
    p9_begin(r, P9_TCLUNK, tag);
    p9_put32(r, fid);
    p9_end(r);
}

void p9_build_lcreate(struct p9_req* r, uint16_t tag, uint32_t fid, const char* name, uint32_t flags, uint32_t mode) {
    p9_begin(r, P9_TLCREATE, tag);
    p9_put32(r, fid);
    p9_put_str(r, name);
    p9_put32(r, flags);
    p9_put32(r, mode);
    p9_put32(r, 0); /* gid */
    p9_end(r);
}

void p9_build_write(struct p9_req* r, uint16_t tag, uint32_t fid, uint64_t offset, const void* data, uint32_t count) {
    p9_begin(r, P9_TWRITE, tag);
    p9_put32(r, fid);
    p9_put64(r, offset);
    p9_put32(r, count);
    for (uint32_t i = 0; i < count; ++i) p9_put8(r, ((const uint8_t*)data)[i]);
    p9_end(r);
}

/* ---- The ring ------------------------------------------------------------ */

/* Adds the chain (`out` readable, then `in` writable buffers) with r as its token. */
static bool post_buffers(struct p9_req* r, const struct virtq_buf* bufs, unsigned out, unsigned in) {
    r->done = false;
    r->used_len = 0xffffffffu;
    r->submitted_tsc = rdtsc();
    return virtq_add(&p9_dev.vq, bufs, out, in, r) >= 0;
}

bool p9_post_raw(struct p9_req* r, uint32_t readable, uint32_t writable) {
    struct virtq_buf bufs[2];
    unsigned out = 0, in = 0;
    if (readable) bufs[out++] = (struct virtq_buf){r->tx, readable};
    if (writable) bufs[out + in++] = (struct virtq_buf){r->rx, writable};
    return post_buffers(r, bufs, out, in);
}

bool p9_post(struct p9_req* r) { return p9_post_raw(r, r->tx_len, r->rx_cap); }

bool p9_post_split(struct p9_req* r, const uint32_t read_cuts[2], const uint32_t write_cuts[2]) {
    if (!(0 < read_cuts[0] && read_cuts[0] < read_cuts[1] && read_cuts[1] < r->tx_len) ||
        !(0 < write_cuts[0] && write_cuts[0] < write_cuts[1] && write_cuts[1] < r->rx_cap))
        panic("p9_post_split: cuts %u,%u of %u and %u,%u of %u", read_cuts[0], read_cuts[1], r->tx_len,
              write_cuts[0], write_cuts[1], r->rx_cap);
    const struct virtq_buf bufs[6] = {
        {r->tx, read_cuts[0]},
        {r->tx + read_cuts[0], read_cuts[1] - read_cuts[0]},
        {r->tx + read_cuts[1], r->tx_len - read_cuts[1]},
        {r->rx, write_cuts[0]},
        {r->rx + write_cuts[0], write_cuts[1] - write_cuts[0]},
        {r->rx + write_cuts[1], r->rx_cap - write_cuts[1]},
    };
    return post_buffers(r, bufs, 3, 3);
}

void p9_kick(void) { vp_kick(&p9_dev.dev, &p9_dev.vq); }

struct p9_req* p9_get_used(void) {
    uint32_t len = 0;
    struct p9_req* r = virtq_get(&p9_dev.vq, &len);
    if (r) {
        r->used_len = len;
        r->done = true;
    }
    return r;
}

bool p9_wait(struct p9_req* r, uint64_t timeout_ms) {
    const uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
    while (!r->done) {
        if (!p9_get_used()) {
            if (p9_dev.vq.device_error || now_ns() > deadline) return false;
            cpu_relax();
        }
    }
    return true;
}

/* ---- Replies ------------------------------------------------------------- */

static uint32_t le32(const uint8_t* p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

int p9_check_reply(const struct p9_req* r, uint8_t want) {
    if (r->used_len < P9_HEADER || r->used_len > r->rx_cap)
        return fail("reply to type %u (tag %u): used length %u", r->type, r->tag, r->used_len), P9_FAILED;
    const uint32_t size = le32(r->rx);
    const uint8_t type = r->rx[4];
    const uint16_t tag = (uint16_t)(r->rx[5] | r->rx[6] << 8);
    if (size != r->used_len)
        return fail("reply to type %u: size field %u, used length %u", r->type, size, r->used_len), P9_FAILED;
    if (tag != r->tag) return fail("reply to type %u: tag %u, sent %u", r->type, tag, r->tag), P9_FAILED;
    if (type == P9_RLERROR) {
        if (size != P9_HEADER + 4) return fail("Rlerror of %u bytes, not 11", size), P9_FAILED;
        return -(int)le32(r->rx + P9_HEADER);
    }
    if (type != want) return fail("reply to type %u: type %u, want %u", r->type, type, want), P9_FAILED;
    return 0;
}

void p9_in_init(struct p9_in* in, const struct p9_req* r) {
    in->p = r->rx;
    in->len = r->used_len <= r->rx_cap ? r->used_len : 0;
    in->at = P9_HEADER;
    in->bad = in->len < P9_HEADER;
}

static uint64_t get(struct p9_in* in, unsigned bytes) {
    if (in->bad || in->at + bytes > in->len) {
        in->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; ++i) v |= (uint64_t)in->p[in->at + i] << (8 * i);
    in->at += bytes;
    return v;
}

uint8_t p9_get8(struct p9_in* in) { return (uint8_t)get(in, 1); }
uint16_t p9_get16(struct p9_in* in) { return (uint16_t)get(in, 2); }
uint32_t p9_get32(struct p9_in* in) { return (uint32_t)get(in, 4); }
uint64_t p9_get64(struct p9_in* in) { return get(in, 8); }

void p9_get_qid(struct p9_in* in, struct p9_qid* qid) {
    qid->type = p9_get8(in);
    qid->version = p9_get32(in);
    qid->path = p9_get64(in);
}

const uint8_t* p9_get_str(struct p9_in* in, uint16_t* len) {
    *len = p9_get16(in);
    if (in->bad || in->at + *len > in->len) {
        in->bad = true;
        *len = 0;
        return in->p;
    }
    const uint8_t* s = in->p + in->at;
    in->at += *len;
    return s;
}

bool p9_qid_equal(const struct p9_qid* a, const struct p9_qid* b) {
    return a->type == b->type && a->version == b->version && a->path == b->path;
}

/* ---- Synchronous calls ------------------------------------------------------ */

static uint16_t next_tag = 1;

static uint16_t new_tag(void) {
    if (next_tag == P9_NOTAG) next_tag = 1;
    return next_tag++;
}

/* Posts p9_dev.sync (built), waits, checks: 0, -errno or P9_FAILED. The
 * reply must fill the body exactly: `in` is left after the header. */
static int call(uint8_t want, struct p9_in* in) {
    struct p9_req* r = p9_dev.sync;
    if (!p9_post(r)) return fail("request queue full"), P9_FAILED;
    p9_kick();
    if (!p9_wait(r, 2000))
        return fail("no reply to type %u (tag %u) in 2 s (status 0x%x%s%s)", r->type, r->tag, vp_status(&p9_dev.dev),
                    p9_dev.vq.device_error ? ", " : "", p9_dev.vq.device_error ? p9_dev.vq.device_error : ""),
               P9_FAILED;
    const int result = p9_check_reply(r, want);
    if (result == 0) p9_in_init(in, r);
    return result;
}

/* After parsing: the reply held exactly the fields read. */
static int parsed(const struct p9_in* in, const char* what) {
    if (in->bad || in->at != in->len)
        return fail("%s: reply of %u bytes, fields end at %u%s", what, in->len, in->at, in->bad ? " (short)" : ""),
               P9_FAILED;
    return 0;
}

int p9_version(uint32_t msize) {
    struct p9_in in;
    p9_build_version(p9_dev.sync, msize, "9P2000.L");
    int result = call(P9_RVERSION, &in);
    if (result) return result;
    const uint32_t got = p9_get32(&in);
    uint16_t len;
    const uint8_t* version = p9_get_str(&in, &len);
    if ((result = parsed(&in, "Rversion"))) return result;
    if (len != 8 || memcmp(version, "9P2000.L", 8) != 0) {
        char text[32];
        const uint16_t n = len < sizeof text - 1 ? len : sizeof text - 1;
        memcpy(text, version, n);
        text[n] = '\0';
        return fail("Rversion: version \"%s\" (%u bytes), want 9P2000.L", text, len), P9_FAILED;
    }
    if (got == 0 || got > msize) return fail("Rversion: msize %u for %u asked", got, msize), P9_FAILED;
    p9_dev.msize = got;
    return 0;
}

int p9_attach(uint32_t fid, struct p9_qid* qid) {
    struct p9_in in;
    p9_build_attach(p9_dev.sync, new_tag(), fid);
    int result = call(P9_RATTACH, &in);
    if (result) return result;
    p9_get_qid(&in, qid);
    return parsed(&in, "Rattach");
}

int p9_walk(uint32_t fid, uint32_t newfid, const char* const* names, unsigned n, struct p9_qid* qids) {
    struct p9_in in;
    p9_build_walk(p9_dev.sync, new_tag(), fid, newfid, names, n);
    int result = call(P9_RWALK, &in);
    if (result) return result;
    const uint16_t nwqid = p9_get16(&in);
    if (nwqid > n) return fail("Rwalk: %u qids for %u names", nwqid, n), P9_FAILED;
    for (unsigned i = 0; i < nwqid; ++i) p9_get_qid(&in, &qids[i]);
    if ((result = parsed(&in, "Rwalk"))) return result;
    return nwqid;
}

int p9_getattr(uint32_t fid, struct p9_attr* attr) {
    struct p9_in in;
    p9_build_getattr(p9_dev.sync, new_tag(), fid);
    int result = call(P9_RGETATTR, &in);
    if (result) return result;
    attr->valid = p9_get64(&in);
    p9_get_qid(&in, &attr->qid);
    attr->mode = p9_get32(&in);
    attr->uid = p9_get32(&in);
    attr->gid = p9_get32(&in);
    attr->nlink = p9_get64(&in);
    (void)p9_get64(&in); /* rdev */
    attr->size = p9_get64(&in);
    (void)p9_get64(&in); /* blksize */
    attr->blocks = p9_get64(&in);
    for (int i = 0; i < 10; ++i) (void)p9_get64(&in); /* 4 times (sec, nsec), gen, data_version */
    return parsed(&in, "Rgetattr");
}

int p9_lopen(uint32_t fid, uint32_t flags, struct p9_qid* qid) {
    struct p9_in in;
    p9_build_lopen(p9_dev.sync, new_tag(), fid, flags);
    int result = call(P9_RLOPEN, &in);
    if (result) return result;
    p9_get_qid(&in, qid);
    (void)p9_get32(&in); /* iounit */
    return parsed(&in, "Rlopen");
}

int p9_read(uint32_t fid, uint64_t offset, uint32_t count, void* out) {
    struct p9_in in;
    if (count > p9_dev.sync->rx_cap - P9_READ_HEADER) count = p9_dev.sync->rx_cap - P9_READ_HEADER;
    p9_build_read(p9_dev.sync, new_tag(), fid, offset, count);
    int result = call(P9_RREAD, &in);
    if (result) return result;
    const uint32_t n = p9_get32(&in);
    if (n > count || in.at + n != in.len)
        return fail("Rread: count %u for %u asked, reply of %u bytes", n, count, in.len), P9_FAILED;
    memcpy(out, in.p + in.at, n);
    return (int)n;
}

int p9_clunk(uint32_t fid) {
    struct p9_in in;
    p9_build_clunk(p9_dev.sync, new_tag(), fid);
    int result = call(P9_RCLUNK, &in);
    if (result) return result;
    return parsed(&in, "Rclunk");
}

int p9_lcreate(uint32_t fid, const char* name, uint32_t flags, uint32_t mode, struct p9_qid* qid) {
    struct p9_in in;
    p9_build_lcreate(p9_dev.sync, new_tag(), fid, name, flags, mode);
    int result = call(P9_RLCREATE, &in);
    if (result) return result;
    p9_get_qid(&in, qid);
    (void)p9_get32(&in); /* iounit */
    return parsed(&in, "Rlcreate");
}

bool p9_session(uint32_t wanted, uint32_t root_fid, struct p9_qid* root_qid) {
    if (!p9_start(wanted)) return false;
    int result = p9_version(P9_MSIZE);
    if (result == P9_FAILED) return false;
    CHECK(result == 0, "Tversion: Rlerror %d", -result);
    struct p9_qid qid;
    result = p9_attach(root_fid, root_qid ? root_qid : &qid);
    if (result == P9_FAILED) return false;
    CHECK(result == 0, "Tattach: Rlerror %d", -result);
    return true;
}
