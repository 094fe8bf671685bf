/* PCI configuration access and BAR sizing; see pci.h. */
#include "pci.h"

#include "x86.h"

uint32_t pci_config_address(struct pci_address a, uint8_t offset) {
    return 0x80000000u | (uint32_t)a.bus << 16 | (uint32_t)(a.device & 0x1f) << 11 | (uint32_t)(a.function & 7) << 8 |
           (offset & 0xfc);
}

/* Single vCPU, no interrupt handler touches config space: no lock needed
 * between selecting the dword and accessing the data port. */
uint32_t pci_read32(struct pci_address a, uint8_t offset) {
    outl(PCI_CONFIG_ADDRESS, pci_config_address(a, offset));
    return inl(PCI_CONFIG_DATA);
}

uint16_t pci_read16(struct pci_address a, uint8_t offset) {
    outl(PCI_CONFIG_ADDRESS, pci_config_address(a, offset));
    return inw((uint16_t)(PCI_CONFIG_DATA + (offset & 2)));
}

uint8_t pci_read8(struct pci_address a, uint8_t offset) {
    outl(PCI_CONFIG_ADDRESS, pci_config_address(a, offset));
    return inb((uint16_t)(PCI_CONFIG_DATA + (offset & 3)));
}

void pci_write32(struct pci_address a, uint8_t offset, uint32_t value) {
    outl(PCI_CONFIG_ADDRESS, pci_config_address(a, offset));
    outl(PCI_CONFIG_DATA, value);
}

void pci_write16(struct pci_address a, uint8_t offset, uint16_t value) {
    outl(PCI_CONFIG_ADDRESS, pci_config_address(a, offset));
    outw((uint16_t)(PCI_CONFIG_DATA + (offset & 2)), value);
}

void pci_write8(struct pci_address a, uint8_t offset, uint8_t value) {
    outl(PCI_CONFIG_ADDRESS, pci_config_address(a, offset));
    outb((uint16_t)(PCI_CONFIG_DATA + (offset & 3)), value);
}

bool pci_mechanism1_present(void) {
    outl(PCI_CONFIG_ADDRESS, 0x80000000u);
    const bool present = inl(PCI_CONFIG_ADDRESS) == 0x80000000u;
    outl(PCI_CONFIG_ADDRESS, 0);
    return present;
}

bool pci_present(struct pci_address a) { return pci_read16(a, PCI_VENDOR_ID) != 0xffff; }

bool pci_next_function(struct pci_address* a, bool first) {
    struct pci_address at = *a;
    if (!first) {
        const bool multi = at.function == 0 ? (pci_read8(at, PCI_HEADER_TYPE) & 0x80) != 0 : true;
        if (multi && at.function < 7) {
            at.function++;
        } else {
            at.function = 0;
            at.device++;
        }
    }
    for (; at.device < 32; at.device++, at.function = 0) {
        for (; at.function < 8; at.function++) {
            if (pci_present(at)) {
                *a = at;
                return true;
            }
            if (at.function == 0) break; /* no function 0: slot empty */
        }
    }
    return false;
}

bool pci_find(uint16_t vendor, uint16_t device, struct pci_address* found) {
    for (uint8_t dev = 0; dev < 32; ++dev) {
        struct pci_address a = {0, dev, 0};
        const uint32_t ids = pci_read32(a, PCI_VENDOR_ID);
        if ((ids & 0xffff) == vendor && (ids >> 16) == device) {
            *found = a;
            return true;
        }
    }
    return false;
}

struct pci_bar pci_bar_probe(struct pci_address a, unsigned index) {
    struct pci_bar bar = {0};
    const uint8_t reg = (uint8_t)(PCI_BAR0 + 4 * index);
    const uint32_t original = pci_read32(a, reg);
    bar.io = original & 1;
    const uint16_t command = pci_read16(a, PCI_COMMAND);
    /* Turn decoding off while the BAR holds the sizing pattern, so it never
     * decodes at 0xffff.... */
    pci_write16(a, PCI_COMMAND, command & (uint16_t)~(bar.io ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY));
    pci_write32(a, reg, 0xffffffffu);
    const uint32_t mask = pci_read32(a, reg);
    pci_write32(a, reg, original);
    uint64_t size_mask = 0;
    if (bar.io) {
        /* Bit 0 is the I/O indicator, bit 1 reserved; the upper 16 bits may
         * read 0 on devices that decode only 16 address bits. */
        size_mask = mask & 0xfffffffcu;
        if (size_mask && (size_mask >> 16) == 0) size_mask |= 0xffff0000u;
        bar.address = original & 0xfffffffcu;
    } else {
        bar.is64 = ((original >> 1) & 3) == 2;
        bar.prefetchable = (original >> 3) & 1;
        size_mask = mask & 0xfffffff0u;
        bar.address = original & 0xfffffff0u;
        if (bar.is64 && index < 5) {
            const uint8_t high = (uint8_t)(reg + 4);
            const uint32_t original_high = pci_read32(a, high);
            pci_write32(a, high, 0xffffffffu);
            const uint32_t mask_high = pci_read32(a, high);
            pci_write32(a, high, original_high);
            size_mask |= (uint64_t)mask_high << 32;
            bar.address |= (uint64_t)original_high << 32;
        } else {
            size_mask |= 0xffffffff00000000ull;
        }
    }
    pci_write16(a, PCI_COMMAND, command);
    if ((uint32_t)size_mask == 0) return (struct pci_bar){0}; /* a BAR the device lacks reads 0 (PCI 3.0 6.2.5.1) */
    if (bar.io) size_mask |= 0xffffffff00000000ull;
    bar.implemented = true;
    bar.size = ~size_mask + 1; /* lowest writable address bit */
    return bar;
}

void pci_enable(struct pci_address a, uint16_t bits) {
    pci_write16(a, PCI_COMMAND, (uint16_t)(pci_read16(a, PCI_COMMAND) | bits));
}
