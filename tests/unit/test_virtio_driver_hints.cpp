// Names for the device status byte, and the hint for a guest that never
// initialised a device: which kernel option, from how far the driver got.

#include <catch2/catch.hpp>

#include <string>

#include "virtio/device_status.h"
#include "virtio/driver_hints.h"
#include "virtio/virtio_blk.h"
#include "virtio/virtio_console.h"
#include "virtio/virtio_net.h"
#include "virtio/virtio_rng.h"

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

TEST_CASE("driver hints: every device names its guest kernel option", "[virtio]") {
    CHECK(VirtioConsole::kKind.guest_kconfig == "CONFIG_VIRTIO_CONSOLE");
    CHECK(VirtioBlk::kKind.guest_kconfig == "CONFIG_VIRTIO_BLK");
    CHECK(VirtioNet::kKind.guest_kconfig == "CONFIG_VIRTIO_NET");
    CHECK(VirtioRng::kKind.guest_kconfig == "CONFIG_HW_RANDOM_VIRTIO");
}

TEST_CASE("driver hints: the warning follows how far the guest got", "[virtio]") {
    CHECK(never_driver_ok_warning("virtio-blk0 00:02.0", VirtioBlk::kKind, 0) ==
          "virtio-blk0 00:02.0 never reached DRIVER_OK: no guest driver touched it: are CONFIG_VIRTIO_PCI (with "
          "CONFIG_VIRTIO_PCI_LEGACY) and CONFIG_VIRTIO_BLK enabled in the guest kernel?");
    CHECK(never_driver_ok_warning("virtio-net0 00:03.0", VirtioNet::kKind, ds::kAcknowledge) ==
          "virtio-net0 00:03.0 never reached DRIVER_OK: the guest found it but no driver took it: is "
          "CONFIG_VIRTIO_NET enabled in the guest kernel?");
    CHECK(never_driver_ok_warning("virtio-console0", VirtioConsole::kKind,
                                  ds::kAcknowledge | ds::kDriver) ==
          "virtio-console0 never reached DRIVER_OK: its guest driver gave up (status bits seen: "
          "ACKNOWLEDGE|DRIVER): look in the guest kernel log");
    CHECK_THAT(never_driver_ok_warning("x", VirtioConsole::kKind, ds::kAcknowledge | ds::kFailed),
               Contains("gave up (status bits seen: ACKNOWLEDGE|FAILED)"));
    CHECK_THAT(never_driver_ok_warning("virtio-rng0", VirtioRng::kKind, ds::kAcknowledge),
               Contains("is CONFIG_HW_RANDOM_VIRTIO enabled"));
    constexpr VirtioDeviceKind kNoOption{.type = VirtioDeviceType{9}, .name = "type 9", .pci_device_id = 0x1009,
                                         .pci_class = 0, .guest_kconfig = ""};
    CHECK_THAT(never_driver_ok_warning("x", kNoOption, ds::kAcknowledge),
               Contains("is the virtio type 9 driver enabled"));
}
