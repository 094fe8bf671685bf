/* The guest's 9P2000.L client over virtio-9p (the "9P transport", virtio
 * device 9, legacy PCI device 0x1af4:0x1009), shared by the conformance
 * tests (tests_9p.c) and the benchmarks (bench_9p.c).
 *
 * The device: feature bit 0 (MOUNT_TAG) offers a configuration of a le16
 * tag length and the tag's bytes (no NUL), the name a guest mounts by. One
 * request queue; each chain is one 9P request (device-readable) followed
 * by room for its reply (device-writable). The used length is the reply's
 * size. Requests may complete in any order: a client matches replies to
 * requests by tag, and never sends a request that needs another's answer
 * (a fid made by a walk) before that answer came.
 *
 * A message (Linux's include/net/9p/9p.h; diod's protocol.md):
 *   size[4] type[1] tag[2] body...     little-endian; size counts itself
 *   strings: len[2] bytes; qid: type[1] version[4] path[8]
 * The messages this client sends, and their replies:
 *   Tversion  tag=NOTAG msize[4] version[s]      Rversion msize[4] version[s]
 *   Tattach   fid[4] afid[4] uname[s] aname[s] n_uname[4]     Rattach qid
 *   Twalk     fid[4] newfid[4] nwname[2] nwname*name[s]       Rwalk nwqid[2] nwqid*qid
 *   Tgetattr  fid[4] request_mask[8]             Rgetattr valid[8] qid mode[4] uid[4] gid[4]
 *                                                  nlink[8] rdev[8] size[8] blksize[8] blocks[8]
 *                                                  atime, mtime, ctime, btime (sec[8] nsec[8]) gen[8]
 *                                                  data_version[8]
 *   Tlopen    fid[4] flags[4]                    Rlopen qid iounit[4]
 *   Tlcreate  fid[4] name[s] flags[4] mode[4] gid[4]     Rlcreate qid iounit[4]
 *   Tread     fid[4] offset[8] count[4]          Rread count[4] data[count]
 *   Twrite    fid[4] offset[8] count[4] data[count]       Rwrite count[4]
 *   Tclunk    fid[4]                             Rclunk
 *   any                                          Rlerror ecode[4] (a Linux errno) */
#ifndef BAREMETAL_P9_H
#define BAREMETAL_P9_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio_pci.h"
#include "virtq.h"

#define VIRTIO_PCI_DEVICE_9P 0x1009
#define P9_QUEUE 0
#define P9_F_MOUNT_TAG 0
#define P9_CFG_TAG_LEN 0 /* le16 */
#define P9_CFG_TAG 2

#define P9_HEADER 7        /* size[4] type[1] tag[2] */
#define P9_READ_HEADER 11  /* Rread: header + count[4] */
#define P9_NOTAG 0xffffu
#define P9_NOFID 0xffffffffu
#define P9_MSIZE 512000u   /* what Linux 6.1's virtio transport asks for */
#define P9_SMALL_REPLY 512u /* room for every reply but Rread's */
#define P9_GETATTR_BASIC 0x7ffull

enum p9_type {
    P9_RLERROR = 7,
    P9_TLOPEN = 12, P9_RLOPEN = 13,
    P9_TLCREATE = 14, P9_RLCREATE = 15,
    P9_TGETATTR = 24, P9_RGETATTR = 25,
    P9_TVERSION = 100, P9_RVERSION = 101,
    P9_TATTACH = 104, P9_RATTACH = 105,
    P9_TWALK = 110, P9_RWALK = 111,
    P9_TREAD = 116, P9_RREAD = 117,
    P9_TWRITE = 118, P9_RWRITE = 119,
    P9_TCLUNK = 120, P9_RCLUNK = 121,
};

#define P9_QID_DIR 0x80
#define P9_QID_SYMLINK 0x02

#define P9_EBADF 9
#define P9_ENOENT 2
#define P9_EINVAL 22
#define P9_ELOOP 40
#define P9_EROFS 30

/* Tlopen/Tlcreate flags (Linux's P9_DOTL_*, equal to x86's O_*). */
#define P9_RDONLY 0
#define P9_RDWR 2
#define P9_CREATE_TRUNC 01000

/* A helper's answer when the transport or the protocol failed (timeout, a
 * reply that is not one): fail() has been called. Rlerror answers are
 * -errno instead. */
#define P9_FAILED (-100000)

struct p9_qid {
    uint8_t type;
    uint32_t version;
    uint64_t path;
};

struct p9_attr {
    uint64_t valid;
    struct p9_qid qid;
    uint32_t mode, uid, gid;
    uint64_t nlink, size, blocks;
};

/* One request: its message and reply room, which must stay put until the
 * device returned the chain. */
struct p9_req {
    uint8_t* tx;
    uint32_t tx_cap, tx_len;
    uint8_t* rx;
    uint32_t rx_cap;
    uint16_t tag;
    uint8_t type;      /* the T-message type sent */
    volatile bool done;
    uint32_t used_len; /* the device's used length */
    uint64_t submitted_tsc;
    uint32_t lane;     /* for the benchmarks */
    uint64_t offset;   /* for the benchmarks */
};

struct p9 {
    struct virtio_pci dev;
    struct virtq vq;
    uint32_t features;
    uint32_t msize; /* after p9_session */
    struct p9_req* sync;  /* the synchronous helpers' request, rx of P9_MSIZE */
};
extern struct p9 p9_dev;

/* Finds the device (false: none) and registers the per-test cleanup that
 * resets it. */
bool p9_find(void);
/* Reset, ACKNOWLEDGE, DRIVER, features (device's & wanted), the request
 * queue, DRIVER_OK. False after fail(). */
bool p9_start(uint32_t wanted);
/* The mount tag from the configuration (le16 length, then the bytes, each
 * read at its own width); copies at most cap-1 bytes and a NUL, returns
 * the length the device states. */
uint16_t p9_config_tag(char* out, uint32_t cap);

/* A request with tx_cap bytes for the message and rx_cap of reply room
 * (from the test's heap). */
struct p9_req* p9_req_new(uint32_t tx_cap, uint32_t rx_cap);

/* Message building: begin, fields, end (patches the size field). */
void p9_begin(struct p9_req* r, uint8_t type, uint16_t tag);
void p9_put8(struct p9_req* r, uint8_t v);
void p9_put16(struct p9_req* r, uint16_t v);
void p9_put32(struct p9_req* r, uint32_t v);
void p9_put64(struct p9_req* r, uint64_t v);
void p9_put_str(struct p9_req* r, const char* s);
void p9_end(struct p9_req* r);
/* The messages themselves (begin..end). `names` of a walk: n strings. */
void p9_build_version(struct p9_req* r, uint32_t msize, const char* version);
void p9_build_attach(struct p9_req* r, uint16_t tag, uint32_t fid);
void p9_build_walk(struct p9_req* r, uint16_t tag, uint32_t fid, uint32_t newfid, const char* const* names,
                   unsigned n);
void p9_build_getattr(struct p9_req* r, uint16_t tag, uint32_t fid);
void p9_build_lopen(struct p9_req* r, uint16_t tag, uint32_t fid, uint32_t flags);
void p9_build_read(struct p9_req* r, uint16_t tag, uint32_t fid, uint64_t offset, uint32_t count);
void p9_build_clunk(struct p9_req* r, uint16_t tag, uint32_t fid);
void p9_build_lcreate(struct p9_req* r, uint16_t tag, uint32_t fid, const char* name, uint32_t flags, uint32_t mode);
void p9_build_write(struct p9_req* r, uint16_t tag, uint32_t fid, uint64_t offset, const void* data, uint32_t count);

/* Queueing: p9_post adds the chain (tx[0..tx_len) readable, then
 * rx[0..rx_cap) writable; not kicked) and returns false when the ring is
 * full. p9_post_raw adds any readable/writable lengths of the two buffers
 * (malformed chains). p9_kick publishes and notifies if the device wants
 * it. p9_get_used takes the next used chain (NULL: none yet, or the device
 * broke a ring rule: p9_dev.vq.device_error), marking it done. */
bool p9_post(struct p9_req* r);
bool p9_post_raw(struct p9_req* r, uint32_t readable, uint32_t writable);
/* p9_post with the message cut into three readable descriptors at
 * read_cuts[0] < read_cuts[1], and the reply room into three writable ones
 * at write_cuts (each cut inside its buffer): a device must treat the
 * chain's buffers as one stream, wherever they break. */
bool p9_post_split(struct p9_req* r, const uint32_t read_cuts[2], const uint32_t write_cuts[2]);
void p9_kick(void);
struct p9_req* p9_get_used(void);
/* Polls until `r` is done (other requests completing meanwhile are marked
 * done too); false after `timeout_ms` or a device error. */
bool p9_wait(struct p9_req* r, uint64_t timeout_ms);

/* Checks r's reply: the used length covers a header, the size field
 * equals the used length, the tag is r's, the type is `want` or Rlerror.
 * Returns 0 for `want`, -errno for an Rlerror, P9_FAILED after fail(). */
int p9_check_reply(const struct p9_req* r, uint8_t want);

/* A reply reader, after the header; reads past the end set `bad` and
 * read as 0. */
struct p9_in {
    const uint8_t* p;
    uint32_t len, at;
    bool bad;
};
void p9_in_init(struct p9_in* in, const struct p9_req* r);
uint8_t p9_get8(struct p9_in* in);
uint16_t p9_get16(struct p9_in* in);
uint32_t p9_get32(struct p9_in* in);
uint64_t p9_get64(struct p9_in* in);
void p9_get_qid(struct p9_in* in, struct p9_qid* qid);
/* A string: its bytes (pointing into the reply) and length. */
const uint8_t* p9_get_str(struct p9_in* in, uint16_t* len);
bool p9_qid_equal(const struct p9_qid* a, const struct p9_qid* b);

/* Synchronous calls through p9_dev.sync: one request, kick, wait 2 s,
 * check. Each returns 0 (or a count) on success, -errno for an Rlerror,
 * P9_FAILED after fail(). */
/* Tversion with `msize` and "9P2000.L"; p9_dev.msize gets the answer. */
int p9_version(uint32_t msize);
int p9_attach(uint32_t fid, struct p9_qid* qid);
/* Returns nwqid (a partial walk: fewer than n); qids gets them (room for n). */
int p9_walk(uint32_t fid, uint32_t newfid, const char* const* names, unsigned n, struct p9_qid* qids);
int p9_getattr(uint32_t fid, struct p9_attr* attr);
int p9_lopen(uint32_t fid, uint32_t flags, struct p9_qid* qid);
/* Returns the byte count; the data is copied to `out`. */
int p9_read(uint32_t fid, uint64_t offset, uint32_t count, void* out);
int p9_clunk(uint32_t fid);
/* Tlcreate of `name` in directory fid `fid` (which becomes the open file). */
int p9_lcreate(uint32_t fid, const char* name, uint32_t flags, uint32_t mode, struct p9_qid* qid);
/* p9_start(wanted), Tversion (msize P9_MSIZE) and Tattach of `root_fid`;
 * false after fail(). */
bool p9_session(uint32_t wanted, uint32_t root_fid, struct p9_qid* root_qid);

#endif
