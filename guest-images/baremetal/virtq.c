/* The driver's side of a split virtqueue; see virtq.h. Each step is
 * commented with the spec rule it follows, so this file can serve as a
 * reference for writing a legacy virtio driver. */
#include "virtq.h"

/* Ordering. The device is another CPU (a VMM thread) reading and writing
 * the same memory. x86 keeps stores in order with stores and loads with
 * loads, so publishing (descriptors, then ring entry, then idx) and
 * consuming (idx, then the entry) need only stop the compiler. A store
 * followed by a load of another location can be reordered by the CPU,
 * which matters where we publish an index and then read the other side's
 * suppression field: that needs a full fence. */
#define compiler_barrier() __asm__ volatile("" ::: "memory")
#define virtq_mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)

static size_t align_up(size_t n, size_t align) { return (n + align - 1) & ~(align - 1); }

size_t virtq_legacy_bytes(uint32_t size) {
    const size_t driver_part = 16 * (size_t)size + 6 + 2 * (size_t)size; /* descriptors + available ring */
    return align_up(driver_part, VIRTQ_LEGACY_ALIGN) + 6 + 8 * (size_t)size;
}

void virtq_init(struct virtq* vq, uint16_t index, uint16_t size, void* memory, uintptr_t dma_offset,
                uint64_t features, struct virtq_slot* slots) {
    uint8_t* base = (uint8_t*)memory;
    const size_t avail = 16 * (size_t)size;
    const size_t used = align_up(avail + 6 + 2 * (size_t)size, VIRTQ_LEGACY_ALIGN);
    vq->size = size;
    vq->index = index;
    vq->desc = (volatile struct virtq_desc*)base;
    vq->avail_flags = (volatile uint16_t*)(base + avail);
    vq->avail_idx = (volatile uint16_t*)(base + avail + 2);
    vq->avail_ring = (volatile uint16_t*)(base + avail + 4);
    vq->used_event = (volatile uint16_t*)(base + avail + 4 + 2 * (size_t)size);
    vq->used_flags = (volatile uint16_t*)(base + used);
    vq->used_idx = (volatile uint16_t*)(base + used + 2);
    vq->used_ring = (volatile struct virtq_used_elem*)(base + used + 4);
    vq->avail_event = (volatile uint16_t*)(base + used + 4 + 8 * (size_t)size);
    vq->dma_offset = dma_offset;
    vq->event_idx = (features >> VIRTIO_F_RING_EVENT_IDX) & 1;
    vq->indirect = (features >> VIRTIO_F_RING_INDIRECT_DESC) & 1;
    vq->slots = slots;
    vq->device_error = 0;
    /* All descriptors free, chained 0 -> 1 -> ... -> size-1. The rings are
     * zero (the caller zeroed the memory): indices 0, flags 0, as the
     * device expects of a new queue (2.7.10.1 / 2.7.7.1). */
    for (uint16_t i = 0; i < size; ++i) {
        vq->desc[i].next = (uint16_t)(i + 1);
        slots[i].in_use = false;
        slots[i].token = 0;
    }
    vq->free_head = 0;
    vq->num_free = size;
    vq->shadow_avail = 0;
    vq->kicked_avail = 0;
    vq->last_used = 0;
}

uint64_t virtq_dma(const struct virtq* vq, const void* p) { return (uint64_t)((uintptr_t)p - vq->dma_offset); }

uint32_t virtq_pfn(const struct virtq* vq) {
    return (uint32_t)(virtq_dma(vq, (const void*)vq->desc) / VIRTQ_LEGACY_ALIGN);
}

/* Puts `head` in the next available ring slot. Not visible to the device
 * until virtq_kick_prepare() moves avail->idx. */
static void expose(struct virtq* vq, uint16_t head, void* token, uint16_t ndesc, uint32_t writable_len) {
    vq->slots[head].token = token;
    vq->slots[head].ndesc = ndesc;
    vq->slots[head].writable_len = writable_len;
    vq->slots[head].in_use = true;
    vq->avail_ring[vq->shadow_avail & (vq->size - 1)] = head;
    vq->shadow_avail++;
}

int virtq_add(struct virtq* vq, const struct virtq_buf* bufs, unsigned out, unsigned in, void* token) {
    const unsigned total = out + in;
    if (total == 0 || total > vq->num_free) return -1;
    /* Take descriptors off the free list and fill them: readable first,
     * then writable (2.7.4.2: a driver MUST NOT put a device-readable
     * buffer after a device-writable one). Every descriptor but the last
     * has NEXT. */
    const uint16_t head = vq->free_head;
    uint16_t i = head;
    uint32_t writable_len = 0;
    for (unsigned n = 0; n < total; ++n) {
        volatile struct virtq_desc* d = &vq->desc[i];
        d->addr = virtq_dma(vq, bufs[n].addr);
        d->len = bufs[n].len;
        d->flags = (uint16_t)((n >= out ? VIRTQ_DESC_F_WRITE : 0) | (n + 1 < total ? VIRTQ_DESC_F_NEXT : 0));
        if (n >= out) writable_len += bufs[n].len;
        /* The free list is linked through `next` already, so the chain's
         * links are in place; the last descriptor's `next` (still the rest
         * of the free list) is ignored by the device without NEXT. */
        i = d->next;
    }
    vq->free_head = i;
    vq->num_free = (uint16_t)(vq->num_free - total);
    expose(vq, head, token, (uint16_t)total, writable_len);
    return head;
}

int virtq_add_indirect(struct virtq* vq, const struct virtq_buf* bufs, unsigned out, unsigned in,
                       struct virtq_desc* table, void* token) {
    const unsigned total = out + in;
    if (!vq->indirect || total == 0 || vq->num_free == 0) return -1;
    /* The table is an array of descriptors like the ring's, except that
     * `next` indexes the table (2.7.5.3). The ring descriptor that points
     * at it carries only INDIRECT: INDIRECT together with NEXT is not
     * allowed, and neither is INDIRECT inside the table (2.7.5.3.1). */
    uint32_t writable_len = 0;
    for (unsigned n = 0; n < total; ++n) {
        table[n].addr = virtq_dma(vq, bufs[n].addr);
        table[n].len = bufs[n].len;
        table[n].flags = (uint16_t)((n >= out ? VIRTQ_DESC_F_WRITE : 0) | (n + 1 < total ? VIRTQ_DESC_F_NEXT : 0));
        table[n].next = (uint16_t)(n + 1 < total ? n + 1 : 0);
        if (n >= out) writable_len += bufs[n].len;
    }
    const uint16_t head = vq->free_head;
    volatile struct virtq_desc* d = &vq->desc[head];
    vq->free_head = d->next;
    vq->num_free--;
    d->addr = virtq_dma(vq, table);
    d->len = (uint32_t)(total * sizeof(struct virtq_desc));
    d->flags = VIRTQ_DESC_F_INDIRECT;
    expose(vq, head, token, 1, writable_len);
    return head;
}

bool virtq_kick_prepare(struct virtq* vq) {
    /* 2.7.13: descriptors and ring entries before the index that exposes
     * them (a store-store order, kept by x86: a compiler barrier). */
    compiler_barrier();
    const uint16_t old_idx = vq->kicked_avail, new_idx = vq->shadow_avail;
    *vq->avail_idx = new_idx;
    vq->kicked_avail = new_idx;
    /* 2.7.13 step 4: the index store before reading the device's
     * suppression field; otherwise we might read a stale "no kick" while
     * the device goes idle, and both sides wait forever. */
    virtq_mb();
    if (vq->event_idx) {
        /* 2.7.10: kick only if the device asked for an index we just passed. */
        return virtq_need_event(*vq->avail_event, new_idx, old_idx);
    }
    return !(*vq->used_flags & VIRTQ_USED_F_NO_NOTIFY);
}

bool virtq_has_used(const struct virtq* vq) { return *vq->used_idx != vq->last_used; }

void* virtq_get(struct virtq* vq, uint32_t* len) {
    if (vq->device_error || !virtq_has_used(vq)) return 0;
    /* 2.7.14: read used->idx before the element it covers (load-load:
     * ordered on x86; the volatile reads keep the compiler in line). */
    compiler_barrier();
    const volatile struct virtq_used_elem* e = &vq->used_ring[vq->last_used & (vq->size - 1)];
    const uint32_t id = e->id, written = e->len;
    if (id >= vq->size || !vq->slots[id].in_use) {
        vq->device_error = "used ring: id is not the head of a chain in flight";
        return 0;
    }
    struct virtq_slot* slot = &vq->slots[id];
    if (written > slot->writable_len) {
        vq->device_error = "used ring: length larger than the chain's writable buffers";
        return 0;
    }
    /* Give the chain's descriptors back: walk `next` for ndesc entries and
     * splice them in front of the free list. */
    uint16_t tail = (uint16_t)id;
    for (uint16_t n = 1; n < slot->ndesc; ++n) tail = vq->desc[tail].next;
    vq->desc[tail].next = vq->free_head;
    vq->free_head = (uint16_t)id;
    vq->num_free = (uint16_t)(vq->num_free + slot->ndesc);
    slot->in_use = false;
    vq->last_used++;
    if (len) *len = written;
    return slot->token;
}

void virtq_disable_interrupts(struct virtq* vq) {
    /* Without EVENT_IDX the flag is the (best-effort) request. With it the
     * device ignores the flag and interrupts when its used index passes
     * used_event; so point used_event at the entry just behind the next
     * one: the used index passes it again only after 65536 more entries. */
    if (vq->event_idx)
        *vq->used_event = (uint16_t)(vq->last_used - 1);
    else
        *vq->avail_flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
}

static bool rearm(struct virtq* vq, uint16_t event) {
    if (vq->event_idx)
        *vq->used_event = event;
    else
        *vq->avail_flags = 0;
    /* The store above before re-reading used->idx: an element the device
     * added just before seeing it would otherwise get no interrupt and no
     * attention (2.7.14's race). */
    virtq_mb();
    return virtq_has_used(vq);
}

bool virtq_enable_interrupts(struct virtq* vq) { return rearm(vq, vq->last_used); }

bool virtq_enable_interrupts_after(struct virtq* vq, uint16_t count) {
    return rearm(vq, (uint16_t)(vq->last_used + (count ? count - 1 : 0)));
}
