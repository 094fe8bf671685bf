/* A legacy virtio-pci driver (virtio 1.2 section 4.1.4.8, "legacy
 * interface"; the register block of the original virtio-pci): the device's
 * registers are one I/O BAR (BAR 0):
 *
 *   offset  width  register
 *   0       32     device (host) features, bits 0-31           RO
 *   4       32     driver (guest) features                     RW
 *   8       32     queue address: page frame number (4096)     RW, of the selected queue
 *   12      16     queue size                                  RO, of the selected queue
 *   14      16     queue select                                RW
 *   16      16     queue notify: write the queue index         WO
 *   18      8      device status                               RW
 *   19      8      ISR status: bit 0 queue, bit 1 config       RO, reading clears it
 *   20      ...    device-specific configuration, while MSI-X is off
 * and while MSI-X is enabled (4.1.4.8):
 *   20      16     config change vector                        RW
 *   22      16     queue vector of the selected queue          RW
 *   24      ...    device-specific configuration
 *
 * Initialization (3.1.1, legacy variant 3.1.2): reset (status 0), set
 * ACKNOWLEDGE, set DRIVER, read device features and write the subset we
 * use (legacy has no FEATURES_OK), set up each queue (select it, read its
 * size, which a legacy driver cannot change, write the ring's PFN), then
 * DRIVER_OK. A queue address of 0 releases the queue. */
#ifndef BAREMETAL_VIRTIO_PCI_H
#define BAREMETAL_VIRTIO_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "pci.h"
#include "virtq.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_CONSOLE 0x1003 /* transitional device IDs: 0x1000 + type - 1, but a table */
#define VIRTIO_PCI_DEVICE_BLOCK 0x1001

#define VIRTIO_PCI_HOST_FEATURES 0
#define VIRTIO_PCI_GUEST_FEATURES 4
#define VIRTIO_PCI_QUEUE_PFN 8
#define VIRTIO_PCI_QUEUE_NUM 12
#define VIRTIO_PCI_QUEUE_SEL 14
#define VIRTIO_PCI_QUEUE_NOTIFY 16
#define VIRTIO_PCI_STATUS 18
#define VIRTIO_PCI_ISR 19
#define VIRTIO_PCI_CONFIG 20
#define VIRTIO_MSI_CONFIG_VECTOR 20
#define VIRTIO_MSI_QUEUE_VECTOR 22
#define VIRTIO_PCI_CONFIG_MSIX 24
#define VIRTIO_MSI_NO_VECTOR 0xffff

/* Device status bits (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01
#define VIRTIO_STATUS_DRIVER 0x02
#define VIRTIO_STATUS_DRIVER_OK 0x04
#define VIRTIO_STATUS_FEATURES_OK 0x08 /* not part of the legacy interface */
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

/* Legacy feature bit 30, VIRTIO_F_BAD_FEATURE: some devices (QEMU) offer
 * it only to catch drivers that accept every bit; a driver never does. */
#define VIRTIO_F_BAD_FEATURE 30

#define VIRTIO_ISR_QUEUE 0x01
#define VIRTIO_ISR_CONFIG 0x02

struct virtio_pci {
    struct pci_address pci;
    uint16_t io;         /* BAR 0 */
    uint32_t bar_size;
    uint8_t irq;         /* interrupt line register: the IOAPIC input (GSI) */
    uint8_t pin;         /* interrupt pin: 1 = INTA# */
    uint16_t config;     /* where device configuration starts: 20, or 24 with MSI-X on */
};

/* Finds the function with this device ID, enables I/O decoding and bus
 * mastering (the device reads and writes our rings), and fills `dev`. */
bool virtio_pci_find(uint16_t device_id, struct virtio_pci* dev);

uint8_t vp_read8(const struct virtio_pci* d, uint16_t offset);
uint16_t vp_read16(const struct virtio_pci* d, uint16_t offset);
uint32_t vp_read32(const struct virtio_pci* d, uint16_t offset);
void vp_write8(const struct virtio_pci* d, uint16_t offset, uint8_t v);
void vp_write16(const struct virtio_pci* d, uint16_t offset, uint16_t v);
void vp_write32(const struct virtio_pci* d, uint16_t offset, uint32_t v);

uint8_t vp_status(const struct virtio_pci* d);
void vp_set_status(const struct virtio_pci* d, uint8_t status);
/* Writes status 0 and waits until it reads 0 (a legacy device resets
 * synchronously; this guards against one that does not). */
bool vp_reset(const struct virtio_pci* d);
uint32_t vp_device_features(const struct virtio_pci* d);
void vp_set_driver_features(const struct virtio_pci* d, uint32_t features);
/* Selects queue `index` and returns its size (0: no such queue). */
uint16_t vp_queue_size(const struct virtio_pci* d, uint16_t index);
/* Selects queue `vq->index` and writes its PFN (0 releases it). */
void vp_set_queue_pfn(const struct virtio_pci* d, uint16_t index, uint32_t pfn);
uint32_t vp_queue_pfn(const struct virtio_pci* d, uint16_t index);
void vp_notify(const struct virtio_pci* d, uint16_t index);
/* Reads (and so clears) the ISR; this also lowers the INTx line. */
uint8_t vp_isr(const struct virtio_pci* d);

/* INTx: routes the device's interrupt line (d->irq) through the IOAPIC to
 * `handler` on this CPU and unmasks interrupts (TPR 0); returns the vector.
 * Level-triggered, active low, as the MP table and ACPI describe it,
 * except where level interrupts are unusable (PVM, see cpu.h): there edge,
 * which works because the handler reads the ISR, lowering the line, so the
 * next interrupt makes a new rising edge. The ISR is read once here: a line
 * left asserted by earlier completions would never make an edge. */
struct interrupt_frame;
uint8_t vp_intx_route(const struct virtio_pci* d, void (*handler)(struct interrupt_frame*));
/* Masks the IOAPIC input and removes the handler of `vector`. */
void vp_intx_unroute(const struct virtio_pci* d, uint8_t vector);

/* MSI-X on or off (see msix.h), moving d->config with it. */
struct msix;
void vp_set_msix(struct virtio_pci* d, const struct msix* m, bool on);
/* Maps config changes / queue `index` to MSI-X `vector` and returns what
 * the register reads back (VIRTIO_MSI_NO_VECTOR: the device could not). */
uint16_t vp_set_config_vector(const struct virtio_pci* d, uint16_t vector);
uint16_t vp_set_queue_vector(const struct virtio_pci* d, uint16_t index, uint16_t vector);

/* The whole legacy initialization up to (not including) DRIVER_OK: reset,
 * ACKNOWLEDGE, DRIVER, features = device's & wanted, never BAD_FEATURE.
 * Returns the negotiated features. */
uint32_t vp_begin_init(const struct virtio_pci* d, uint32_t wanted);
/* Allocates and places queue `index` at the device's size: zeroed, 4096-
 * aligned memory from the page allocator; the slots array too. */
bool vp_setup_queue(const struct virtio_pci* d, struct virtq* vq, uint16_t index, uint32_t features);
/* Publishes what was added to `vq` and kicks the device if it wants it.
 * Returns whether it kicked. */
bool vp_kick(const struct virtio_pci* d, struct virtq* vq);

#endif
