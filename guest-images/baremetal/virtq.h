/* The driver's side of a split virtqueue (virtio 1.2 section 2.7) in the
 * legacy layout (2.7.2): what a guest driver writes and reads in its own
 * memory. No hardware access here: notifying the device is the transport's
 * job (virtio_pci.h), so this file also builds on the host, where unit
 * tests run it against minikvm's device-side engine.
 *
 * Memory of a queue of `size` entries (size a power of two, 1..32768), from
 * a 4096-byte aligned, zeroed block of virtq_legacy_bytes(size):
 *
 *   descriptor table   16 x size   {addr u64, len u32, flags u16, next u16}
 *   available ring     6 + 2 x size {flags u16, idx u16, ring[size] u16, used_event u16}
 *   padding to the next 4096-byte boundary
 *   used ring          6 + 8 x size {flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16}
 *
 * Ownership: the driver writes descriptors, the available ring and
 * used_event; the device writes the used ring and avail_event. Indices are
 * free-running u16 counters; ring positions are index % size, so they
 * wrap from 65535 to 0 without any special case (size divides 65536).
 *
 * Everything is little-endian; this code runs on x86 only, so no byte
 * swapping. Not thread-safe: one caller at a time per queue. */
#ifndef BAREMETAL_VIRTQ_H
#define BAREMETAL_VIRTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VIRTQ_DESC_F_NEXT 1     /* `next` continues the chain */
#define VIRTQ_DESC_F_WRITE 2    /* device writes this buffer (else reads it) */
#define VIRTQ_DESC_F_INDIRECT 4 /* addr/len is a table of descriptors */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1 /* driver: no used-buffer interrupts, please */
#define VIRTQ_USED_F_NO_NOTIFY 1     /* device: no kicks, please */

/* Ring feature bits (6: reserved feature bits). */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29

#define VIRTQ_LEGACY_ALIGN 4096
#define VIRTQ_MAX_SIZE 32768

struct virtq_desc {
    uint64_t addr;  /* guest-physical */
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_used_elem {
    uint32_t id;  /* head of the chain the device finished */
    uint32_t len; /* bytes it wrote into the chain's writable buffers */
};

/* One buffer of a request: where (in the driver's address space) and how
 * long. Readable buffers come first in a chain, writable ones after (2.7.4.2). */
struct virtq_buf {
    const void* addr;
    uint32_t len;
};

/* Per-head bookkeeping, one entry per descriptor: the caller's token and
 * how many table entries the chain occupies. */
struct virtq_slot {
    void* token;
    uint32_t writable_len; /* for checking the device's used length */
    uint16_t ndesc;        /* ring descriptors used (1 for an indirect chain) */
    bool in_use;
};

struct virtq {
    uint16_t size;  /* entries, a power of two */
    uint16_t index; /* the queue's number on the device */

    /* The three parts, in the driver's address space. */
    volatile struct virtq_desc* desc;
    volatile uint16_t* avail_flags;
    volatile uint16_t* avail_idx;
    volatile uint16_t* avail_ring;   /* [size] */
    volatile uint16_t* used_event;   /* avail->ring[size] */
    volatile uint16_t* used_flags;
    volatile uint16_t* used_idx;
    volatile struct virtq_used_elem* used_ring; /* [size] */
    volatile uint16_t* avail_event;  /* used->ring[size] */

    /* Driver address minus dma_offset = the address the device sees. 0 in
     * the identity-mapped guest; the host mapping's base in unit tests. */
    uintptr_t dma_offset;
    bool event_idx;   /* VIRTIO_F_RING_EVENT_IDX negotiated */
    bool indirect;    /* VIRTIO_F_RING_INDIRECT_DESC negotiated */

    uint16_t free_head; /* free descriptors, linked through `next` */
    uint16_t num_free;
    uint16_t shadow_avail; /* the available index we will publish next */
    uint16_t kicked_avail; /* the available index at the last kick decision */
    uint16_t last_used;    /* the next used entry we will consume */
    struct virtq_slot* slots; /* [size] */

    /* Set when the device broke a rule of the used ring: an id that is not
     * the head of a chain in flight, or a length larger than the chain's
     * writable buffers. virtq_get() stops there. */
    const char* device_error;
};

/* Bytes of a legacy queue of `size` entries (the block virtq_init takes). */
size_t virtq_legacy_bytes(uint32_t size);

/* Lays the queue out in `memory` (VIRTQ_LEGACY_ALIGN-aligned, zeroed,
 * virtq_legacy_bytes(size) long), links every descriptor into the free
 * list, and records the negotiated ring features. `slots` has `size`
 * entries. The device learns the address from the transport (legacy: the
 * page frame number virtq_pfn()). */
void virtq_init(struct virtq* vq, uint16_t index, uint16_t size, void* memory, uintptr_t dma_offset,
                uint64_t features, struct virtq_slot* slots);

/* The device-visible address of a driver pointer, and the ring's PFN. */
uint64_t virtq_dma(const struct virtq* vq, const void* p);
uint32_t virtq_pfn(const struct virtq* vq);

/* Makes `out` readable then `in` writable buffers one chain and puts its
 * head in the available ring (not yet visible: see virtq_kick_prepare).
 * Returns the head, or -1 when fewer than out + in descriptors are free or
 * out + in is 0. */
int virtq_add(struct virtq* vq, const struct virtq_buf* bufs, unsigned out, unsigned in, void* token);

/* The same request through an indirect table (2.7.5.3): the chain lives in
 * `table` (out + in entries, caller's memory, kept until the request is
 * used) and takes a single ring descriptor flagged INDIRECT. Only when
 * VIRTIO_F_RING_INDIRECT_DESC was negotiated; -1 otherwise or when no
 * descriptor is free. */
int virtq_add_indirect(struct virtq* vq, const struct virtq_buf* bufs, unsigned out, unsigned in,
                       struct virtq_desc* table, void* token);

/* Publishes the added heads (write barrier, then avail->idx) and says
 * whether the device wants a notification for them: with EVENT_IDX, whether
 * the new index passed the device's avail_event (2.7.10); without, unless
 * the device set VIRTQ_USED_F_NO_NOTIFY. The caller then kicks. */
bool virtq_kick_prepare(struct virtq* vq);

/* Whether the device has returned buffers we have not consumed. */
bool virtq_has_used(const struct virtq* vq);

/* Consumes the next used element: returns its token (NULL when there is
 * none, or after a device error) and the written length in *len. The
 * chain's descriptors go back to the free list. */
void* virtq_get(struct virtq* vq, uint32_t* len);

/* Used-buffer interrupt suppression (2.7.7). disable: set
 * VIRTQ_AVAIL_F_NO_INTERRUPT (a hint: the device may still interrupt), or
 * with EVENT_IDX move used_event just behind the next entry.
 * enable: clear the flag, or with EVENT_IDX set used_event to the next
 * entry we will consume; then (full barrier) returns true if used entries
 * arrived meanwhile, which the caller must process since their interrupt
 * may have been suppressed. enable_delayed: with EVENT_IDX, ask for the
 * interrupt only after `count` more used entries. */
void virtq_disable_interrupts(struct virtq* vq);
bool virtq_enable_interrupts(struct virtq* vq);
bool virtq_enable_interrupts_after(struct virtq* vq, uint16_t count);

/* The event-index test (2.7.7.2): did moving an index from `old_idx` to
 * `new_idx` pass `event`? Both sides use it. */
static inline bool virtq_need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx) {
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

#ifdef __cplusplus
}
#endif

#endif
