#pragma once
// How a PCI slot's INTx pin reaches the interrupt controller. The host
// bridge decides the wiring; the firmware tables (MP table, ACPI _PRT)
// describe it to the guest.

#include <cstdint>

namespace minikvm {

struct PciInterruptRoute {
    uint8_t device;       // PCI device number on bus 0
    uint8_t pin;          // 0 = INTA# .. 3 = INTD#
    uint8_t ioapic_input; // IOAPIC pin it is wired to (level-triggered)
};

}  // namespace minikvm
