/* The guest's virtio-blk driver (virtio 1.2 section 5.2, legacy PCI device
 * 0x1af4:0x1001), shared by the conformance tests (tests_blk.c) and the
 * benchmarks (bench_blk.c).
 *
 * A request is one chain (5.2.6):
 *   device-readable:  header {le32 type, le32 ioprio, le64 sector}
 *                     [data to write, or discard/write-zeroes segments]
 *   device-writable:  [data read, or the 20-byte ID]
 *                     status (u8), the last writable byte
 * The device reports how many bytes it wrote in the used ring (for a good
 * read: data + 1). */
#ifndef BAREMETAL_BLK_H
#define BAREMETAL_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio_pci.h"
#include "virtq.h"

#define BLK_QUEUE 0
#define BLK_SECTOR 512u

/* Feature bits (5.2.3). */
#define BLK_F_SIZE_MAX 1
#define BLK_F_SEG_MAX 2
#define BLK_F_GEOMETRY 4
#define BLK_F_RO 5
#define BLK_F_BLK_SIZE 6
#define BLK_F_FLUSH 9
#define BLK_F_TOPOLOGY 10
#define BLK_F_CONFIG_WCE 11
#define BLK_F_DISCARD 13
#define BLK_F_WRITE_ZEROES 14

/* Configuration space offsets (5.2.4), little-endian. */
#define BLK_CFG_CAPACITY 0 /* le64, 512-byte sectors */
#define BLK_CFG_SIZE_MAX 8
#define BLK_CFG_SEG_MAX 12
#define BLK_CFG_BLK_SIZE 20
#define BLK_CFG_MAX_DISCARD_SECTORS 36
#define BLK_CFG_MAX_DISCARD_SEG 40
#define BLK_CFG_DISCARD_SECTOR_ALIGNMENT 44
#define BLK_CFG_MAX_WRITE_ZEROES_SECTORS 48
#define BLK_CFG_MAX_WRITE_ZEROES_SEG 52
#define BLK_CFG_WRITE_ZEROES_MAY_UNMAP 56
#define BLK_CFG_SIZE 60

/* Request types (5.2.6; 2 is the legacy SCSI command, 5.2.6.3). */
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_SCSI_CMD 2
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
#define BLK_T_DISCARD 11
#define BLK_T_WRITE_ZEROES 13
#define BLK_ID_BYTES 20
#define BLK_SEG_F_UNMAP 1

#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define BLK_S_UNSUPP 2
#define BLK_S_NONE 0xff /* what the driver puts in the status byte: "not written" */

struct blk_header {
    uint32_t type;
    uint32_t ioprio;
    uint64_t sector;
};

struct blk_segment { /* virtio_blk_discard_write_zeroes */
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

/* One request's driver-side state: header and status live here, so a
 * request must stay put until it is used. */
struct blk_req {
    struct blk_header header;
    uint8_t status;
    bool done;
    uint32_t used_len;
    uint64_t submitted_tsc; /* for the benchmarks' latencies */
};

struct blk {
    struct virtio_pci dev;
    struct virtq vq;
    uint32_t features;
    uint8_t vector; /* 0 while no interrupt handler is installed */
    volatile unsigned queue_interrupts, config_interrupts, spurious_interrupts;
};
extern struct blk blk_dev;

/* Finds the device (false: none) and registers the per-test cleanup that
 * resets it and takes its interrupt off the IOAPIC. */
bool blk_find(void);
/* Reset, ACKNOWLEDGE, DRIVER, features (device's & wanted), the request
 * queue, DRIVER_OK. False after fail(). */
bool blk_start(uint32_t wanted);

uint32_t blk_config32(uint16_t offset);
uint64_t blk_capacity(void);

/* Adds a request: the header (type, sector), then `n` data buffers, which
 * the device writes when `device_writes` (IN, GET_ID) and reads otherwise,
 * then the status byte. Through an indirect table when `indirect` (which
 * must then have been negotiated). Not kicked. Returns the head or -1. */
int blk_add(struct blk_req* r, uint32_t type, uint64_t sector, const struct virtq_buf* data, unsigned n,
            bool device_writes, bool indirect);
/* Adds an arbitrary chain (malformed-request tests): `out` readable, then
 * `in` writable buffers, token `r`. */
int blk_add_raw(struct blk_req* r, const struct virtq_buf* bufs, unsigned out, unsigned in);
void blk_kick(void);
/* Takes every used entry there is, marking its request done; returns how
 * many. Stops (returning what it took) after a device error. */
unsigned blk_reap(void);
/* Polls until `r` is done or `timeout_ms` passed. */
bool blk_wait(struct blk_req* r, uint64_t timeout_ms);
/* One request, synchronously: add, kick, wait 2 s. Returns the status byte,
 * or -1 after fail() (queue full, timeout). *used gets the used length. */
int blk_do(uint32_t type, uint64_t sector, void* data, uint32_t len, bool device_writes, uint32_t* used);

/* INTx through the IOAPIC to a handler that reads the ISR and counts (see
 * console_enable_irq for the edge/level choice); TPR 0. */
void blk_enable_irq(void);
void blk_cleanup_irq(void);

/* The data patterns of the image tests, shared with the host
 * (tests/guest/disk-pattern): the 8-byte word at byte offset o of the disk
 * is o ^ magic, little-endian. */
#define BLK_PATTERN_HOST 0x484f535400000000ull  /* "HOST": what the host wrote before the run */
#define BLK_PATTERN_GUEST 0x4755455300000000ull /* "GUES": what the guest writes */
void blk_pattern_fill(void* buf, uint64_t disk_offset, uint32_t len, uint64_t magic);
/* Returns the offset within buf of the first wrong byte, or -1. */
int64_t blk_pattern_check(const void* buf, uint64_t disk_offset, uint32_t len, uint64_t magic);

#endif
