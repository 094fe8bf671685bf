/* PCI configuration mechanism #1 (ports 0xcf8/0xcfc) on bus 0: config
 * reads and writes at every width, enumeration and BAR sizing. */
#ifndef BAREMETAL_PCI_H
#define BAREMETAL_PCI_H

#include <stdbool.h>
#include <stdint.h>

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc

#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID 0x2e
#define PCI_CAPABILITIES 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d

#define PCI_COMMAND_IO 0x1
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS_INTERRUPT 0x8

struct pci_address {
    uint8_t bus, device, function;
};

/* CONFIG_ADDRESS for a register: enable bit, bus, device, function, and
 * the dword-aligned register number. */
uint32_t pci_config_address(struct pci_address a, uint8_t offset);

/* Config accesses: the dword is selected through 0xcf8, the byte or word
 * inside it through the data port 0xcfc + (offset & 3). */
uint32_t pci_read32(struct pci_address a, uint8_t offset);
uint16_t pci_read16(struct pci_address a, uint8_t offset);
uint8_t pci_read8(struct pci_address a, uint8_t offset);
void pci_write32(struct pci_address a, uint8_t offset, uint32_t value);
void pci_write16(struct pci_address a, uint8_t offset, uint16_t value);
void pci_write8(struct pci_address a, uint8_t offset, uint8_t value);

/* Whether CONFIG_ADDRESS is there: it keeps a written value. */
bool pci_mechanism1_present(void);

/* A function is present when its vendor ID is not 0xffff. */
bool pci_present(struct pci_address a);
/* Iterates over the functions present on bus 0: start with *a = {0, 0, 0}
 * and `first` true; functions 1-7 are visited only on multi-function
 * devices (header type bit 7). */
bool pci_next_function(struct pci_address* a, bool first);

/* First function on bus 0 with these IDs; false if none. */
bool pci_find(uint16_t vendor, uint16_t device, struct pci_address* found);

struct pci_bar {
    bool implemented;
    bool io;           /* I/O space; otherwise memory */
    bool is64;         /* 64-bit memory BAR (takes the next register too) */
    bool prefetchable;
    uint64_t address;  /* as programmed */
    uint64_t size;
};

/* Sizes BAR `index`: decoding of that kind is switched off in the command
 * register, all-ones written, the read-back mask gives the size, then the
 * original value and command register are restored. */
struct pci_bar pci_bar_probe(struct pci_address a, unsigned index);

/* Sets the command register bits (e.g. PCI_COMMAND_IO). */
void pci_enable(struct pci_address a, uint16_t bits);

#endif
