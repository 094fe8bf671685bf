/* Legacy virtio-pci driver; see virtio_pci.h. */
#include "virtio_pci.h"

#include "apic.h"
#include "cpu.h"
#include "msix.h"
#include "runtime.h"
#include "x86.h"

bool virtio_pci_find(uint16_t device_id, struct virtio_pci* dev) {
    struct pci_address a;
    if (!pci_mechanism1_present() || !pci_find(VIRTIO_PCI_VENDOR, device_id, &a)) return false;
    /* A legacy (transitional) device has revision 0 and its registers in
     * an I/O BAR 0. */
    const struct pci_bar bar = pci_bar_probe(a, 0);
    if (!bar.implemented || !bar.io) return false;
    dev->pci = a;
    dev->io = (uint16_t)bar.address;
    dev->bar_size = (uint32_t)bar.size;
    dev->irq = pci_read8(a, PCI_INTERRUPT_LINE);
    dev->pin = pci_read8(a, PCI_INTERRUPT_PIN);
    dev->config = VIRTIO_PCI_CONFIG;
    /* I/O decoding for the registers; bus mastering because the device
     * reads and writes our memory (minikvm does not check it; hardware and
     * QEMU do). INTx stays enabled (INTx-disable clear). */
    pci_enable(a, PCI_COMMAND_IO | PCI_COMMAND_MASTER);
    return true;
}

uint8_t vp_read8(const struct virtio_pci* d, uint16_t offset) { return inb((uint16_t)(d->io + offset)); }
uint16_t vp_read16(const struct virtio_pci* d, uint16_t offset) { return inw((uint16_t)(d->io + offset)); }
uint32_t vp_read32(const struct virtio_pci* d, uint16_t offset) { return inl((uint16_t)(d->io + offset)); }
void vp_write8(const struct virtio_pci* d, uint16_t offset, uint8_t v) { outb((uint16_t)(d->io + offset), v); }
void vp_write16(const struct virtio_pci* d, uint16_t offset, uint16_t v) { outw((uint16_t)(d->io + offset), v); }
void vp_write32(const struct virtio_pci* d, uint16_t offset, uint32_t v) { outl((uint16_t)(d->io + offset), v); }

uint8_t vp_status(const struct virtio_pci* d) { return vp_read8(d, VIRTIO_PCI_STATUS); }
void vp_set_status(const struct virtio_pci* d, uint8_t status) { vp_write8(d, VIRTIO_PCI_STATUS, status); }

bool vp_reset(const struct virtio_pci* d) {
    vp_set_status(d, 0);
    for (int i = 0; i < 1000; ++i)
        if (vp_status(d) == 0) return true;
    return false;
}

uint32_t vp_device_features(const struct virtio_pci* d) { return vp_read32(d, VIRTIO_PCI_HOST_FEATURES); }
void vp_set_driver_features(const struct virtio_pci* d, uint32_t f) { vp_write32(d, VIRTIO_PCI_GUEST_FEATURES, f); }

uint16_t vp_queue_size(const struct virtio_pci* d, uint16_t index) {
    vp_write16(d, VIRTIO_PCI_QUEUE_SEL, index);
    return vp_read16(d, VIRTIO_PCI_QUEUE_NUM);
}

void vp_set_queue_pfn(const struct virtio_pci* d, uint16_t index, uint32_t pfn) {
    vp_write16(d, VIRTIO_PCI_QUEUE_SEL, index);
    vp_write32(d, VIRTIO_PCI_QUEUE_PFN, pfn);
}

uint32_t vp_queue_pfn(const struct virtio_pci* d, uint16_t index) {
    vp_write16(d, VIRTIO_PCI_QUEUE_SEL, index);
    return vp_read32(d, VIRTIO_PCI_QUEUE_PFN);
}

void vp_notify(const struct virtio_pci* d, uint16_t index) { vp_write16(d, VIRTIO_PCI_QUEUE_NOTIFY, index); }
uint8_t vp_isr(const struct virtio_pci* d) { return vp_read8(d, VIRTIO_PCI_ISR); }

uint32_t vp_begin_init(const struct virtio_pci* d, uint32_t wanted) {
    /* 3.1.1 step 1: reset. */
    vp_reset(d);
    /* Step 2: ACKNOWLEDGE, we noticed the device. Step 3: DRIVER, we can
     * drive it. Each write carries every bit set so far. */
    vp_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
    vp_set_status(d, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    /* Step 4: feature negotiation. A legacy device has 32 feature bits and
     * no FEATURES_OK handshake: the features are agreed once written. */
    const uint32_t features = vp_device_features(d) & wanted & ~(1u << VIRTIO_F_BAD_FEATURE);
    vp_set_driver_features(d, features);
    return features;
}

bool vp_setup_queue(const struct virtio_pci* d, struct virtq* vq, uint16_t index, uint32_t features) {
    /* Step 5 (device-specific setup): select the queue and read its size;
     * 0 means the queue does not exist. A legacy driver must use this
     * size, so the ring layout follows from it. */
    const uint16_t size = vp_queue_size(d, index);
    if (size == 0 || (size & (size - 1)) != 0) return false;
    /* The device sees guest-physical addresses; here they equal ours. The
     * queue must be in one physically contiguous, page-aligned block. */
    void* ring = alloc_zeroed(virtq_legacy_bytes(size), VIRTQ_LEGACY_ALIGN);
    struct virtq_slot* slots = alloc_zeroed(sizeof(struct virtq_slot) * size, 16);
    virtq_init(vq, index, size, ring, 0, features, slots);
    vp_write32(d, VIRTIO_PCI_QUEUE_PFN, virtq_pfn(vq)); /* still selected */
    return true;
}

bool vp_kick(const struct virtio_pci* d, struct virtq* vq) {
    if (!virtq_kick_prepare(vq)) return false;
    /* The notify write is an I/O port access: it cannot pass the index
     * store before it (I/O instructions are serializing on x86). */
    vp_notify(d, vq->index);
    return true;
}

uint8_t vp_intx_route(const struct virtio_pci* d, void (*handler)(struct interrupt_frame*)) {
    const uint8_t vector = (uint8_t)(VECTOR_DEVICE_BASE + (d->irq & 0x3f));
    set_interrupt_handler(vector, handler);
    ioapic_route(d->irq, vector, host_quirks.level_irq_unusable ? IOAPIC_EDGE_HIGH : IOAPIC_LEVEL_LOW);
    (void)vp_isr(d);
    irq_enable();
    return vector;
}

void vp_intx_unroute(const struct virtio_pci* d, uint8_t vector) {
    ioapic_mask(d->irq);
    set_interrupt_handler(vector, 0);
}

void vp_set_msix(struct virtio_pci* d, const struct msix* m, bool on) {
    msix_set_enabled(m, on);
    d->config = on ? VIRTIO_PCI_CONFIG_MSIX : VIRTIO_PCI_CONFIG;
}

uint16_t vp_set_config_vector(const struct virtio_pci* d, uint16_t vector) {
    vp_write16(d, VIRTIO_MSI_CONFIG_VECTOR, vector);
    return vp_read16(d, VIRTIO_MSI_CONFIG_VECTOR);
}

uint16_t vp_set_queue_vector(const struct virtio_pci* d, uint16_t index, uint16_t vector) {
    vp_write16(d, VIRTIO_PCI_QUEUE_SEL, index);
    vp_write16(d, VIRTIO_MSI_QUEUE_VECTOR, vector);
    return vp_read16(d, VIRTIO_MSI_QUEUE_VECTOR);
}
