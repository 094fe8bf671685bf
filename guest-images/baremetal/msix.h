/* MSI-X (PCI Local Bus 3.0 section 6.8.2) from the driver's side: find the
 * capability, reach the table and the Pending Bit Array through the BAR it
 * names, program a vector to interrupt this CPU, mask, enable. The table
 * BAR must lie below 4 GiB (the identity map, boot.S); minikvm and QEMU put
 * it there. */
#ifndef BAREMETAL_MSIX_H
#define BAREMETAL_MSIX_H

#include <stdbool.h>
#include <stdint.h>

#include "pci.h"

#define PCI_CAP_ID_MSIX 0x11
#define MSIX_CONTROL_ENABLE 0x8000
#define MSIX_CONTROL_FUNCTION_MASK 0x4000
#define MSIX_ENTRY_SIZE 16
#define MSIX_ENTRY_CONTROL_MASKED 1
#define MSI_ADDRESS_BASE 0xfee00000u /* x86: the LAPIC window; destination APIC ID in bits 19:12 */

struct msix {
    struct pci_address pci;
    uint8_t cap;           /* offset of the capability in configuration space */
    uint16_t vectors;      /* table size */
    unsigned table_bar, pba_bar;
    uint32_t table_offset, pba_offset;
    uint64_t table, pba;   /* where they are now (memory decoding enabled) */
    uint64_t bar_size;
};

/* The capability list's first entry with this ID (0: none). */
uint8_t pci_find_capability(struct pci_address a, uint8_t id);

/* Fills `m` for the function at `a` and enables memory decoding; false when
 * it has no MSI-X capability or its table BAR is not a memory BAR below
 * 4 GiB. */
bool msix_find(struct pci_address a, struct msix* m);

uint16_t msix_control(const struct msix* m);
void msix_set_enabled(const struct msix* m, bool on);
void msix_set_function_mask(const struct msix* m, bool on);

/* Entry `e`: a fixed, edge interrupt with `apic_vector` to this CPU. The
 * mask bit is left as it is. */
void msix_program(const struct msix* m, unsigned e, uint8_t apic_vector);
void msix_write_message(const struct msix* m, unsigned e, uint64_t address, uint32_t data);
void msix_set_masked(const struct msix* m, unsigned e, bool masked);
bool msix_masked(const struct msix* m, unsigned e);
uint32_t msix_entry_dword(const struct msix* m, unsigned e, unsigned dword);
bool msix_pending(const struct msix* m, unsigned e);

#endif
