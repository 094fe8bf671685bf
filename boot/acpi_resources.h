#pragma once
// ACPI resource data (ACPI 6.x section 6.4, "Resource Data Types for ACPI"):
// the byte format of a ResourceTemplate, which a _CRS object returns inside
// an AML Buffer. Only the descriptors a PCI root bridge needs: the fixed
// I/O ports it decodes itself, and the bus-number, I/O and memory windows
// (below and above 4 GiB) it forwards to the bus below ("producer" ranges,
// in ACPI terms).

#include <cstdint>
#include <vector>

namespace minikvm::acpi_resource {

using Bytes = std::vector<uint8_t>;

// IO (Decode16, base, base, 1, length): ports the device itself uses.
Bytes io_ports(uint16_t base, uint8_t length);

// WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, first,
// last, 0, last - first + 1): bus numbers behind a bridge, inclusive.
Bytes bus_number_window(uint16_t first, uint16_t last);

// WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0,
// first, last, 0, last - first + 1): ports a bridge forwards, inclusive.
Bytes io_window(uint16_t first, uint16_t last);

// DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed,
// NonCacheable, ReadWrite, 0, first, last, 0, last - first + 1): MMIO a
// bridge forwards, inclusive.
Bytes memory_window(uint32_t first, uint32_t last);

// QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable,
// ReadWrite, 0, first, last, 0, last - first + 1): MMIO above 4 GiB a bridge
// forwards, inclusive. Cacheable as in QEMU's 64-bit window, which holds the
// large prefetchable BARs.
Bytes memory_window64(uint64_t first, uint64_t last);

// ResourceTemplate () { descriptors }: the descriptors back to back, then an
// End Tag whose checksum makes the whole template sum to zero.
Bytes resource_template(const std::vector<Bytes>& descriptors);

}  // namespace minikvm::acpi_resource
