#pragma once
// The device status byte (virtio 1.2 section 2.1): the bits a driver sets
// as it initialises a device, whatever the transport, and their names for
// logs and state dumps.

#include <cstdint>
#include <string>

namespace minikvm::device_status {

inline constexpr uint8_t kAcknowledge = 0x01;  // the guest found the device
inline constexpr uint8_t kDriver = 0x02;       // ...and has a driver for it
inline constexpr uint8_t kDriverOk = 0x04;     // the driver is ready
inline constexpr uint8_t kFeaturesOk = 0x08;   // virtio 1.x only; legacy has no such step
inline constexpr uint8_t kNeedsReset = 0x40;   // set by the device
inline constexpr uint8_t kFailed = 0x80;       // the driver gave up

// "ACKNOWLEDGE|DRIVER|DRIVER_OK"; "none" for 0; bits without a name are
// appended in hex ("DRIVER|0x30").
std::string names(uint8_t status);

}  // namespace minikvm::device_status
