#include "boot/acpi_resources.h"

#include <stdexcept>

namespace minikvm::acpi_resource {

namespace {

// Small items pack name and length into one byte: 0 nnnn lll.
constexpr uint8_t small_item_tag(uint8_t name, uint8_t length) { return static_cast<uint8_t>(name << 3 | length); }
constexpr uint8_t kIoPortTag = small_item_tag(0x08, 7);
constexpr uint8_t kEndTag = small_item_tag(0x0f, 1);
constexpr uint8_t kIoDecode16 = 1;  // all 16 address bits decoded, not just 10

// Large items: a tag byte with bit 7 set, then a 16-bit length of the rest.
constexpr uint8_t kDWordAddressSpaceTag = 0x87;
constexpr uint8_t kWordAddressSpaceTag = 0x88;
constexpr uint8_t kQWordAddressSpaceTag = 0x8a;
constexpr uint16_t kWordAddressSpaceLength = 13;   // without a ResourceSource
constexpr uint16_t kDWordAddressSpaceLength = 23;
constexpr uint16_t kQWordAddressSpaceLength = 43;

enum ResourceType : uint8_t { kMemoryRange = 0, kIoRange = 1, kBusNumberRange = 2 };

// General flags. Bit 0 clear: the bridge produces the range for the bus
// below (Linux turns it into a window); bit 1 clear: positive decode.
constexpr uint8_t kMinFixed = 1U << 2;
constexpr uint8_t kMaxFixed = 1U << 3;
constexpr uint8_t kFixedProducerWindow = kMinFixed | kMaxFixed;

constexpr uint8_t kIoEntireRange = 0x3;   // ISA and non-ISA ports alike
constexpr uint8_t kMemoryReadWrite = 0x1;  // and cacheability bits 2:1 = 0: non-cacheable
constexpr uint8_t kMemoryCacheable = 0x1 << 1;  // bits 2:1 = 1

void put_le(Bytes& out, uint64_t value, size_t width) {
    for (size_t i = 0; i < width; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

// Address Space Descriptor with _MIN/_MAX fixed: the spec then wants
// _GRA = 0 and _LEN = _MAX - _MIN + 1. `width` is 2 (Word), 4 (DWord) or
// 8 (QWord).
Bytes address_space(uint8_t tag, uint16_t length, size_t width, ResourceType type, uint8_t type_flags,
                    uint64_t first, uint64_t last) {
    if (first > last) throw std::invalid_argument("ACPI resource: window ends before it starts");
    Bytes out{tag};
    put_le(out, length, 2);
    out.push_back(type);
    out.push_back(kFixedProducerWindow);
    out.push_back(type_flags);
    put_le(out, 0, width);  // _GRA
    put_le(out, first, width);
    put_le(out, last, width);
    put_le(out, 0, width);  // _TRA: no translation, CPU and bus addresses agree
    put_le(out, last - first + 1, width);
    return out;
}

}  // namespace

Bytes io_ports(uint16_t base, uint8_t length) {
    Bytes out{kIoPortTag, kIoDecode16};
    put_le(out, base, 2);  // _MIN
    put_le(out, base, 2);  // _MAX: the same, the ports are fixed
    out.push_back(1);      // _ALN
    out.push_back(length);
    return out;
}

Bytes bus_number_window(uint16_t first, uint16_t last) {
    return address_space(kWordAddressSpaceTag, kWordAddressSpaceLength, 2, kBusNumberRange, 0, first, last);
}

Bytes io_window(uint16_t first, uint16_t last) {
    return address_space(kWordAddressSpaceTag, kWordAddressSpaceLength, 2, kIoRange, kIoEntireRange, first, last);
}

Bytes memory_window(uint32_t first, uint32_t last) {
    return address_space(kDWordAddressSpaceTag, kDWordAddressSpaceLength, 4, kMemoryRange, kMemoryReadWrite,
                         first, last);
}

Bytes memory_window64(uint64_t first, uint64_t last) {
    if (first == 0 && last == ~uint64_t{0}) throw std::invalid_argument("ACPI resource: 2^64 bytes do not fit _LEN");
    return address_space(kQWordAddressSpaceTag, kQWordAddressSpaceLength, 8, kMemoryRange,
                         kMemoryReadWrite | kMemoryCacheable, first, last);
}

Bytes resource_template(const std::vector<Bytes>& descriptors) {
    Bytes out;
    for (const Bytes& descriptor : descriptors) out.insert(out.end(), descriptor.begin(), descriptor.end());
    out.push_back(kEndTag);
    uint8_t sum = 0;
    for (uint8_t byte : out) sum = static_cast<uint8_t>(sum + byte);
    out.push_back(static_cast<uint8_t>(-sum));  // 0 would also do: "no checksum"
    return out;
}

}  // namespace minikvm::acpi_resource
