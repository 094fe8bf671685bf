#include <catch2/catch.hpp>

#include <stdexcept>

#include "boot/acpi_resources.h"

using namespace minikvm;
using acpi_resource::Bytes;

// The expected bytes are what iasl compiles the ASL in each header comment to.

TEST_CASE("IO descriptor: fixed 16-bit decoded ports") {
    CHECK(acpi_resource::io_ports(0xcf8, 8) == Bytes{0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08});
}

TEST_CASE("WordBusNumber window") {
    CHECK(acpi_resource::bus_number_window(0, 0) ==
          Bytes{0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00});
}

TEST_CASE("WordIO window") {
    CHECK(acpi_resource::io_window(0x0d00, 0xffff) ==
          Bytes{0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0x0d, 0xff, 0xff, 0, 0, 0x00, 0xf3});
    CHECK_THROWS_AS(acpi_resource::io_window(2, 1), std::invalid_argument);
}

TEST_CASE("DWordMemory window") {
    CHECK(acpi_resource::memory_window(0xc000'0000, 0xdfff'ffff) ==
          Bytes{0x87, 0x17, 0x00, 0x00, 0x0c, 0x01, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0xc0,
                0xff, 0xff, 0xff, 0xdf, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x20});
}

TEST_CASE("QWordMemory window") {
    // QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite,
    //     0, 0x1000000000, 0x1fffffffff, 0, 0x1000000000)
    CHECK(acpi_resource::memory_window64(0x10'0000'0000, 0x1f'ffff'ffff) ==
          Bytes{0x8a, 0x2b, 0x00, 0x00, 0x0c, 0x03,                  // memory; producer, fixed; cacheable, read-write
                0, 0, 0, 0, 0, 0, 0, 0,                              // _GRA
                0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00,      // _MIN
                0xff, 0xff, 0xff, 0xff, 0x1f, 0x00, 0x00, 0x00,      // _MAX
                0, 0, 0, 0, 0, 0, 0, 0,                              // _TRA
                0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00});    // _LEN
    CHECK_THROWS_AS(acpi_resource::memory_window64(0x2'0000'0000, 0x1'ffff'ffff), std::invalid_argument);
    CHECK_THROWS_AS(acpi_resource::memory_window64(0, ~uint64_t{0}), std::invalid_argument);  // _LEN would be 2^64
    CHECK(acpi_resource::memory_window64(1, ~uint64_t{0}).size() == 46);
}

TEST_CASE("a resource template ends in an End Tag that makes it sum to zero") {
    CHECK(acpi_resource::resource_template({}) == Bytes{0x79, 0x87});
    const Bytes io = acpi_resource::io_ports(0xcf8, 8);
    const Bytes both = acpi_resource::resource_template({io, acpi_resource::bus_number_window(0, 0)});
    REQUIRE(both.size() == io.size() + 16 + 2);
    CHECK(Bytes(both.begin(), both.begin() + 8) == io);
    CHECK(both[both.size() - 2] == 0x79);
    uint8_t sum = 0;
    for (uint8_t byte : both) sum = static_cast<uint8_t>(sum + byte);
    CHECK(sum == 0);
}
