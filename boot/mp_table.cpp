#include "boot/mp_table.h"

#include <cstring>
#include <stdexcept>

namespace minikvm {

namespace {

constexpr uint8_t kSpecRevision = 4;  // MP spec 1.4
constexpr uint8_t kLapicVersion = 0x14;
constexpr uint8_t kIoapicVersion = 0x11;
constexpr size_t kFloatingPointerSize = 16;
constexpr size_t kHeaderSize = 44;

enum EntryType : uint8_t { kProcessor = 0, kBus = 1, kIoapic = 2, kIoInterrupt = 3, kLocalInterrupt = 4 };
enum InterruptType : uint8_t { kInt = 0, kNmi = 1, kExtInt = 3 };
constexpr uint16_t kConformsToBus = 0x0;
constexpr uint16_t kLevelActiveLow = 0x3 | (0x3 << 2);  // polarity low, level trigger
constexpr uint8_t kAllLapics = 0xff;

class Writer {
public:
    void u8(uint8_t v) { bytes.push_back(v); }
    void u16(uint16_t v) { append(&v, 2); }
    void u32(uint32_t v) { append(&v, 4); }
    void text(const char* s, size_t width) {
        size_t n = std::strlen(s);
        for (size_t i = 0; i < width; ++i) bytes.push_back(i < n ? static_cast<uint8_t>(s[i]) : ' ');
    }
    void zeros(size_t n) { bytes.insert(bytes.end(), n, 0); }
    void append(const void* p, size_t n) {
        auto* b = static_cast<const uint8_t*>(p);
        bytes.insert(bytes.end(), b, b + n);
    }
    std::vector<uint8_t> bytes;
};

void io_interrupt(Writer& w, uint8_t type, uint16_t flags, uint8_t bus, uint8_t bus_irq, uint8_t ioapic_id,
                  uint8_t pin) {
    w.u8(kIoInterrupt);
    w.u8(type);
    w.u16(flags);
    w.u8(bus);
    w.u8(bus_irq);
    w.u8(ioapic_id);
    w.u8(pin);
}

void local_interrupt(Writer& w, uint8_t type, uint8_t lint) {
    w.u8(kLocalInterrupt);
    w.u8(type);
    w.u16(kConformsToBus);
    w.u8(kMpIsaBusId);
    w.u8(0);
    w.u8(kAllLapics);
    w.u8(lint);
}

}  // namespace

uint8_t byte_sum(const uint8_t* data, size_t length) {
    uint8_t sum = 0;
    for (size_t i = 0; i < length; ++i) sum = static_cast<uint8_t>(sum + data[i]);
    return sum;
}

std::vector<uint8_t> build_mp_table(uint64_t address, const MpTableConfig& config) {
    // APIC IDs are 8 bits and the IOAPIC takes the ID after the last CPU.
    if (config.cpu_count == 0 || config.cpu_count > 254) throw std::invalid_argument("MP table: bad CPU count");
    const auto ioapic_id = static_cast<uint8_t>(config.cpu_count);

    Writer entries;
    uint16_t entry_count = 0;
    for (uint32_t cpu = 0; cpu < config.cpu_count; ++cpu, ++entry_count) {
        entries.u8(kProcessor);
        entries.u8(static_cast<uint8_t>(cpu));
        entries.u8(kLapicVersion);
        entries.u8(cpu == 0 ? 0x3 : 0x1);  // enabled, and the first is the boot processor
        entries.u32(config.cpu_signature);
        entries.u32(config.cpu_features);
        entries.zeros(8);
    }
    entries.u8(kBus);
    entries.u8(kMpPciBusId);
    entries.text("PCI", 6);
    entries.u8(kBus);
    entries.u8(kMpIsaBusId);
    entries.text("ISA", 6);
    entry_count += 2;

    entries.u8(kIoapic);
    entries.u8(ioapic_id);
    entries.u8(kIoapicVersion);
    entries.u8(0x1);  // enabled
    entries.u32(kIoapicAddress);
    ++entry_count;

    // ISA IRQ n arrives on IOAPIC pin n (KVM's default GSI routing); IRQ 2 is
    // the 8259 cascade and has no device behind it.
    for (uint8_t irq = 0; irq < 16; ++irq) {
        if (irq == 2) continue;
        io_interrupt(entries, kInt, kConformsToBus, kMpIsaBusId, irq, ioapic_id, irq);
        ++entry_count;
    }
    for (const PciInterruptRoute& route : config.pci_routes) {
        if (route.device > 31 || route.pin > 3 || route.ioapic_input >= kIoapicPins)
            throw std::invalid_argument("MP table: bad PCI interrupt route");
        // The MP spec encodes a PCI source as device << 2 | pin.
        io_interrupt(entries, kInt, kLevelActiveLow, kMpPciBusId, static_cast<uint8_t>(route.device << 2 | route.pin),
                     ioapic_id, route.ioapic_input);
        ++entry_count;
    }
    local_interrupt(entries, kExtInt, 0);
    local_interrupt(entries, kNmi, 1);
    entry_count += 2;

    const uint64_t table_address = address + kFloatingPointerSize;
    Writer blob;
    // Floating pointer structure.
    blob.text("_MP_", 4);
    blob.u32(static_cast<uint32_t>(table_address));
    blob.u8(1);  // length in 16-byte units
    blob.u8(kSpecRevision);
    blob.u8(0);  // checksum, patched below
    blob.zeros(5);  // feature bytes: 0 = a configuration table follows
    blob.bytes[10] = static_cast<uint8_t>(-byte_sum(blob.bytes.data(), kFloatingPointerSize));

    // Configuration table header.
    const size_t header_start = blob.bytes.size();
    blob.text("PCMP", 4);
    blob.u16(static_cast<uint16_t>(kHeaderSize + entries.bytes.size()));
    blob.u8(kSpecRevision);
    blob.u8(0);  // checksum, patched below
    blob.text("MINIKVM", 8);
    blob.text("MINIKVM", 12);
    blob.u32(0);  // no OEM table
    blob.u16(0);
    blob.u16(entry_count);
    blob.u32(kLapicAddress);
    blob.u16(0);  // no extended entries
    blob.u8(0);
    blob.u8(0);
    blob.append(entries.bytes.data(), entries.bytes.size());
    blob.bytes[header_start + 7] =
        static_cast<uint8_t>(-byte_sum(blob.bytes.data() + header_start, blob.bytes.size() - header_start));
    return blob.bytes;
}

}  // namespace minikvm
