// Names for the device status byte, and the hint for a guest that never
// initialised a device: which kernel option, from how far the driver got.

#include <catch2/catch.hpp>

#include <string>

#include "virtio/device_status.h"
#include "virtio/driver_hints.h"

using namespace minikvm;
using Catch::Matchers::Contains;
namespace ds = minikvm::device_status;

TEST_CASE("device status: every bit by name, unknown bits in hex", "[virtio]") {
    CHECK(ds::names(0) == "none");
    CHECK(ds::names(0x07) == "ACKNOWLEDGE|DRIVER|DRIVER_OK");
    CHECK(ds::names(0x0b) == "ACKNOWLEDGE|DRIVER|FEATURES_OK");
    CHECK(ds::names(0xc4) == "DRIVER_OK|NEEDS_RESET|FAILED");
    CHECK(ds::names(0x32) == "DRIVER|0x30");
    CHECK(ds::names(0x10) == "0x10");
}

TEST_CASE("driver hints: type names and guest kernel options", "[virtio]") {
    CHECK(virtio_type_name(VirtioDeviceType::Console) == "console");
    CHECK(virtio_type_name(VirtioDeviceType::Block) == "block");
    CHECK(virtio_type_name(VirtioDeviceType::Net) == "net");
    CHECK(virtio_type_name(static_cast<VirtioDeviceType>(4)) == "type 4");
    CHECK(guest_driver_kconfig(VirtioDeviceType::Console) == "CONFIG_VIRTIO_CONSOLE");
    CHECK(guest_driver_kconfig(VirtioDeviceType::Block) == "CONFIG_VIRTIO_BLK");
    CHECK(guest_driver_kconfig(VirtioDeviceType::Net) == "CONFIG_VIRTIO_NET");
    CHECK(guest_driver_kconfig(static_cast<VirtioDeviceType>(4)).empty());
}

TEST_CASE("driver hints: the warning follows how far the guest got", "[virtio]") {
    CHECK(never_driver_ok_warning("virtio-blk0 00:02.0", VirtioDeviceType::Block, 0) ==
          "virtio-blk0 00:02.0 never reached DRIVER_OK: no guest driver touched it: are CONFIG_VIRTIO_PCI (with "
          "CONFIG_VIRTIO_PCI_LEGACY) and CONFIG_VIRTIO_BLK enabled in the guest kernel?");
    CHECK(never_driver_ok_warning("virtio-net0 00:03.0", VirtioDeviceType::Net, ds::kAcknowledge) ==
          "virtio-net0 00:03.0 never reached DRIVER_OK: the guest found it but no driver took it: is "
          "CONFIG_VIRTIO_NET enabled in the guest kernel?");
    CHECK(never_driver_ok_warning("virtio-console0", VirtioDeviceType::Console,
                                  ds::kAcknowledge | ds::kDriver) ==
          "virtio-console0 never reached DRIVER_OK: its guest driver gave up (status bits seen: "
          "ACKNOWLEDGE|DRIVER): look in the guest kernel log");
    CHECK_THAT(never_driver_ok_warning("x", VirtioDeviceType::Console, ds::kAcknowledge | ds::kFailed),
               Contains("gave up (status bits seen: ACKNOWLEDGE|FAILED)"));
    CHECK_THAT(never_driver_ok_warning("virtio-rng0", static_cast<VirtioDeviceType>(4), ds::kAcknowledge),
               Contains("is the type 4 driver enabled"));
}
