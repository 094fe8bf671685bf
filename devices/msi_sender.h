#pragma once
// Where a device's MSI-X vectors go once the table says "deliver": the
// machine gives each device one (irqfds on MSI routes, IrqfdMsiSender);
// unit tests give a recorder. Called with the device's MSI-X table lock
// held, from whichever thread signalled the vector (the event loop, a
// completion thread) or unmasked it (a vCPU): implementations must not call
// back into the device.

#include <cstdint>
#include <string>

#include "vmm/core/gsi_routing.h"

namespace minikvm {

class MsiSender {
public:
    virtual ~MsiSender() = default;
    // Deliver `vector` of this device with `message`, which the table has
    // checked to be an interrupt message. The same vector may come with a
    // different message after the guest reprogrammed it.
    virtual void send(uint16_t vector, const MsiMessage& message) = 0;
    // Lines for the state dump (each ending in '\n'), without the device's name.
    virtual std::string state_lines() const { return {}; }
};

}  // namespace minikvm
