/* MSI-X from the driver's side; see msix.h. */
#include "msix.h"

#include "apic.h"
#include "x86.h"

uint8_t pci_find_capability(struct pci_address a, uint8_t id) {
    if (!(pci_read16(a, PCI_STATUS) & 0x10)) return 0; /* no capability list */
    uint8_t at = pci_read8(a, PCI_CAPABILITIES) & 0xfc;
    for (unsigned hops = 0; at >= 0x40 && hops < 48; ++hops) { /* 48: a loop would never end */
        if (pci_read8(a, at) == id) return at;
        at = pci_read8(a, (uint8_t)(at + 1)) & 0xfc;
    }
    return 0;
}

bool msix_find(struct pci_address a, struct msix* m) {
    const uint8_t cap = pci_find_capability(a, PCI_CAP_ID_MSIX);
    if (!cap) return false;
    m->pci = a;
    m->cap = cap;
    m->vectors = (uint16_t)((pci_read16(a, (uint8_t)(cap + 2)) & 0x7ff) + 1);
    const uint32_t table = pci_read32(a, (uint8_t)(cap + 4));
    const uint32_t pba = pci_read32(a, (uint8_t)(cap + 8));
    m->table_bar = table & 7;
    m->table_offset = table & ~7u;
    m->pba_bar = pba & 7;
    m->pba_offset = pba & ~7u;
    if (m->table_bar > 5 || m->pba_bar > 5) return false;
    const struct pci_bar table_bar = pci_bar_probe(a, m->table_bar);
    const struct pci_bar pba_bar = pci_bar_probe(a, m->pba_bar);
    if (!table_bar.implemented || table_bar.io || !pba_bar.implemented || pba_bar.io) return false;
    if (table_bar.address + table_bar.size > (1ull << 32) || pba_bar.address + pba_bar.size > (1ull << 32))
        return false;
    m->bar_size = table_bar.size;
    m->table = table_bar.address + m->table_offset;
    m->pba = pba_bar.address + m->pba_offset;
    pci_enable(a, PCI_COMMAND_MEMORY);
    return true;
}

uint16_t msix_control(const struct msix* m) { return pci_read16(m->pci, (uint8_t)(m->cap + 2)); }

static void set_control_bit(const struct msix* m, uint16_t bit, bool on) {
    const uint16_t control = msix_control(m);
    pci_write16(m->pci, (uint8_t)(m->cap + 2), on ? (uint16_t)(control | bit) : (uint16_t)(control & ~bit));
}

void msix_set_enabled(const struct msix* m, bool on) { set_control_bit(m, MSIX_CONTROL_ENABLE, on); }
void msix_set_function_mask(const struct msix* m, bool on) { set_control_bit(m, MSIX_CONTROL_FUNCTION_MASK, on); }

static uint64_t entry_address(const struct msix* m, unsigned e) { return m->table + (uint64_t)e * MSIX_ENTRY_SIZE; }

void msix_write_message(const struct msix* m, unsigned e, uint64_t address, uint32_t data) {
    const uint64_t at = entry_address(m, e);
    mmio_write32(at, (uint32_t)address);
    mmio_write32(at + 4, (uint32_t)(address >> 32));
    mmio_write32(at + 8, data);
}

void msix_program(const struct msix* m, unsigned e, uint8_t apic_vector) {
    msix_write_message(m, e, MSI_ADDRESS_BASE | (uint64_t)lapic_id() << 12, apic_vector);
}

void msix_set_masked(const struct msix* m, unsigned e, bool masked) {
    mmio_write32(entry_address(m, e) + 12, masked ? MSIX_ENTRY_CONTROL_MASKED : 0);
}

uint32_t msix_entry_dword(const struct msix* m, unsigned e, unsigned dword) {
    return mmio_read32(entry_address(m, e) + 4u * dword);
}

bool msix_masked(const struct msix* m, unsigned e) { return msix_entry_dword(m, e, 3) & MSIX_ENTRY_CONTROL_MASKED; }

bool msix_pending(const struct msix* m, unsigned e) {
    return (mmio_read32(m->pba + 4u * (e / 32)) >> (e % 32)) & 1;
}
