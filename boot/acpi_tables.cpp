#include "boot/acpi_tables.h"

#include <cstring>
#include <stdexcept>

#include "boot/acpi_resources.h"
#include "boot/aml.h"
#include "boot/mp_table.h"

namespace minikvm {

namespace {

constexpr size_t kHeaderSize = 36;
constexpr size_t kRsdpSize = 36;
constexpr size_t kFadtSize = 276;  // ACPI 6.x
constexpr uint32_t kFadtWbinvd = 1U << 0;
constexpr uint32_t kFadtPowerButtonIsMethod = 1U << 4;  // no fixed power/sleep buttons
constexpr uint32_t kFadtSleepButtonIsMethod = 1U << 5;
constexpr uint16_t kBootArchNoVga = 1U << 2;  // and, by omission, no 8042 and no legacy devices
constexpr uint8_t kAddressSpaceSystemIo = 1;
constexpr uint8_t kAccessWord = 2;
constexpr uint32_t kMadtPcatCompatible = 1;
constexpr uint16_t kPciConfigPorts = 0xcf8;  // configuration mechanism #1: CONFIG_ADDRESS, CONFIG_DATA
constexpr uint8_t kPciConfigPortCount = 8;
constexpr uint32_t kIoSpaceEnd = 0x1'0000;
constexpr uint32_t kPciAnyFunction = 0xffff;

class Blob {
public:
    size_t size() const { return bytes_.size(); }
    void align(size_t to) { bytes_.resize((bytes_.size() + to - 1) / to * to, 0); }
    void put(size_t at, const void* data, size_t n) { std::memcpy(bytes_.data() + at, data, n); }
    template <typename T>
    void put(size_t at, T value) { put(at, &value, sizeof(T)); }
    size_t append(size_t n) {
        size_t at = bytes_.size();
        bytes_.resize(at + n, 0);
        return at;
    }
    uint8_t sum(size_t at, size_t n) const { return byte_sum(bytes_.data() + at, n); }
    void set_checksum(size_t table_at, size_t length, size_t checksum_offset) {
        bytes_[table_at + checksum_offset] = 0;
        bytes_[table_at + checksum_offset] = static_cast<uint8_t>(-sum(table_at, length));
    }
    std::vector<uint8_t> take() { return std::move(bytes_); }

private:
    std::vector<uint8_t> bytes_;
};

// Generic Address Structure for an I/O port block.
void put_io_address(Blob& blob, size_t at, uint16_t port, uint8_t length) {
    blob.put<uint8_t>(at, kAddressSpaceSystemIo);
    blob.put<uint8_t>(at + 1, static_cast<uint8_t>(length * 8));  // register bit width
    blob.put<uint8_t>(at + 2, 0);
    blob.put<uint8_t>(at + 3, kAccessWord);
    blob.put<uint64_t>(at + 4, port);
}

// Standard description header; the checksum is filled in once the table is complete.
size_t begin_table(Blob& blob, const char* signature, uint8_t revision) {
    blob.align(16);
    size_t at = blob.append(kHeaderSize);
    blob.put(at, signature, 4);
    blob.put<uint8_t>(at + 8, revision);
    blob.put(at + 10, "MNKVM ", 6);
    blob.put(at + 16, "MINIKVM ", 8);
    blob.put<uint32_t>(at + 24, 1);  // OEM revision
    blob.put(at + 28, "MKVM", 4);    // creator ID
    blob.put<uint32_t>(at + 32, 1);  // creator revision
    return at;
}

void end_table(Blob& blob, size_t at) {
    uint32_t length = static_cast<uint32_t>(blob.size() - at);
    blob.put<uint32_t>(at + 4, length);
    blob.set_checksum(at, length, 9);
}

// Name (_S5, Package () { type, type, 0, 0 }): the PM1a/PM1b sleep types
// that make `poweroff` work.
aml::Bytes s5_object(const AcpiConfig& config) {
    return aml::name("_S5", aml::package({aml::integer(config.s5_sleep_type), aml::integer(config.s5_sleep_type),
                                          aml::integer(0), aml::integer(0)}));
}

// What the root bridge decodes: bus 0, its own configuration ports, and the
// I/O and memory windows it forwards to bus 0.
aml::Bytes pci_root_resources(const AcpiConfig& config) {
    const uint32_t io_start = config.pci_io_window_start;
    const uint32_t io_end = config.pci_io_window_end;
    if (io_start < kPciConfigPorts + kPciConfigPortCount || io_end > kIoSpaceEnd || io_start >= io_end)
        throw std::invalid_argument("ACPI: bad PCI I/O window");
    if (config.pci_memory_window_start >= config.pci_memory_window_end)
        throw std::invalid_argument("ACPI: bad PCI memory window");
    if (config.pci_memory64_window_start > config.pci_memory64_window_end)
        throw std::invalid_argument("ACPI: bad PCI 64-bit memory window");
    std::vector<acpi_resource::Bytes> resources{
        acpi_resource::bus_number_window(0, 0),
        acpi_resource::io_ports(kPciConfigPorts, kPciConfigPortCount),
        acpi_resource::io_window(0, kPciConfigPorts - 1),
        acpi_resource::io_window(static_cast<uint16_t>(io_start), static_cast<uint16_t>(io_end - 1)),
        acpi_resource::memory_window(config.pci_memory_window_start, config.pci_memory_window_end - 1),
    };
    // Without it, Linux finds the BARs placed above 4 GiB outside every
    // bridge window and tries to move them below.
    if (config.pci_memory64_window_start != config.pci_memory64_window_end)
        resources.push_back(acpi_resource::memory_window64(config.pci_memory64_window_start,
                                                           config.pci_memory64_window_end - 1));
    return aml::buffer(acpi_resource::resource_template(resources));
}

// _PRT: Package () { Package () { address, pin, source, source index }, ... }.
// The address is the device in the high word with "any function" below;
// a Zero source means no link device, the index being the GSI itself -- the
// IOAPIC input, as the MADT puts the IOAPIC at GSI base 0.
aml::Bytes pci_routing_table(const std::vector<PciInterruptRoute>& routes) {
    std::vector<aml::Bytes> entries;
    for (const PciInterruptRoute& route : routes) {
        if (route.device > 31 || route.pin > 3 || route.ioapic_input >= kIoapicPins)
            throw std::invalid_argument("ACPI: bad PCI interrupt route");
        const uint32_t address = uint32_t{route.device} << 16 | kPciAnyFunction;
        entries.push_back(aml::package(
            {aml::integer(address), aml::integer(route.pin), aml::integer(0), aml::integer(route.ioapic_input)}));
    }
    return aml::package(entries);
}

// Scope (\_SB) { Device (PEVT) { ... } }: the pvpanic port, as QEMU names
// it; Linux's pvpanic-mmio driver binds to _HID "QEMU0001".
aml::Bytes pvpanic_device(uint16_t port) {
    aml::Bytes body;
    aml::append(body, aml::name("_HID", aml::string("QEMU0001")));
    aml::append(body, aml::name("_CRS", aml::buffer(acpi_resource::resource_template({acpi_resource::io_ports(port, 1)}))));
    return aml::scope("\\_SB", aml::device("PEVT", body));
}

// Scope (\_SB) { Device (PCI0) { ... } }: PCI bus 0 behind a root bridge.
aml::Bytes pci_root_bridge(const AcpiConfig& config) {
    aml::Bytes body;
    aml::append(body, aml::name("_HID", aml::eisa_id("PNP0A03")));  // PCI (not PCIe: no _OSC, no MCFG)
    aml::append(body, aml::name("_UID", aml::integer(0)));
    // _ADR beside _HID, as QEMU's PCI0 has it; iasl warns that the spec
    // wants one or the other, and guests use _HID.
    aml::append(body, aml::name("_ADR", aml::integer(0)));
    aml::append(body, aml::name("_BBN", aml::integer(0)));  // bus 0
    aml::append(body, aml::name("_CRS", pci_root_resources(config)));
    aml::append(body, aml::name("_PRT", pci_routing_table(config.pci_routes)));
    return aml::scope("\\_SB", aml::device("PCI0", body));
}

}  // namespace

std::vector<uint8_t> build_acpi_tables(uint64_t address, const AcpiConfig& config) {
    if (config.cpu_count == 0 || config.cpu_count > 254) throw std::invalid_argument("ACPI: bad CPU count");
    Blob blob;
    const size_t rsdp = blob.append(kRsdpSize);

    // DSDT: \_S5, then the PCI root bridge.
    aml::Bytes definitions = s5_object(config);
    aml::append(definitions, pci_root_bridge(config));
    if (config.pvpanic_port != 0) aml::append(definitions, pvpanic_device(config.pvpanic_port));
    const size_t dsdt = begin_table(blob, "DSDT", 2);
    blob.put(blob.append(definitions.size()), definitions.data(), definitions.size());
    end_table(blob, dsdt);

    const size_t fadt = begin_table(blob, "FACP", 6);
    blob.append(kFadtSize - kHeaderSize);
    blob.put<uint32_t>(fadt + 40, static_cast<uint32_t>(address + dsdt));
    blob.put<uint16_t>(fadt + 46, static_cast<uint16_t>(config.sci_irq));
    blob.put<uint32_t>(fadt + 56, config.pm1a_event_port);
    blob.put<uint32_t>(fadt + 64, config.pm1a_control_port);
    blob.put<uint8_t>(fadt + 88, config.pm1a_event_length);
    blob.put<uint8_t>(fadt + 89, config.pm1a_control_length);
    blob.put<uint16_t>(fadt + 109, kBootArchNoVga);
    blob.put<uint32_t>(fadt + 112, kFadtWbinvd | kFadtPowerButtonIsMethod | kFadtSleepButtonIsMethod);
    put_io_address(blob, fadt + 148, config.pm1a_event_port, config.pm1a_event_length);
    put_io_address(blob, fadt + 172, config.pm1a_control_port, config.pm1a_control_length);
    blob.put<uint8_t>(fadt + 131, 1);  // FADT minor version: 6.1
    blob.put<uint64_t>(fadt + 140, address + dsdt);
    end_table(blob, fadt);

    const size_t madt = begin_table(blob, "APIC", 4);
    size_t at = blob.append(8);
    blob.put<uint32_t>(at, kLapicAddress);
    blob.put<uint32_t>(at + 4, kMadtPcatCompatible);
    for (uint32_t cpu = 0; cpu < config.cpu_count; ++cpu) {
        at = blob.append(8);  // Processor Local APIC
        const uint8_t entry[8] = {0, 8, static_cast<uint8_t>(cpu), static_cast<uint8_t>(cpu), 1, 0, 0, 0};
        blob.put(at, entry, sizeof(entry));
    }
    at = blob.append(12);  // I/O APIC, GSIs from 0
    blob.put<uint8_t>(at, 1);
    blob.put<uint8_t>(at + 1, 12);
    blob.put<uint8_t>(at + 2, config.ioapic_id);
    blob.put<uint32_t>(at + 4, kIoapicAddress);
    blob.put<uint32_t>(at + 8, 0);
    at = blob.append(6);  // Local APIC NMI on LINT1 of every processor
    const uint8_t nmi[6] = {4, 6, 0xff, 0, 0, 1};
    blob.put(at, nmi, sizeof(nmi));
    end_table(blob, madt);

    const size_t xsdt = begin_table(blob, "XSDT", 1);
    at = blob.append(16);
    blob.put<uint64_t>(at, address + fadt);
    blob.put<uint64_t>(at + 8, address + madt);
    end_table(blob, xsdt);

    // RSDP (ACPI 2.0+): the first 20 bytes and all 36 each sum to zero.
    blob.put(rsdp, "RSD PTR ", 8);
    blob.put(rsdp + 9, "MNKVM ", 6);
    blob.put<uint8_t>(rsdp + 15, 2);
    blob.put<uint32_t>(rsdp + 20, kRsdpSize);
    blob.put<uint64_t>(rsdp + 24, address + xsdt);
    blob.set_checksum(rsdp, 20, 8);
    blob.set_checksum(rsdp, kRsdpSize, 32);
    return blob.take();
}

}  // namespace minikvm
