#pragma once
// Intel MultiProcessor Specification 1.4 tables: how Linux finds every vCPU,
// the IOAPIC and the interrupt routing without ACPI. The floating pointer and
// the configuration table are built as one blob for a fixed guest address.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "devices/pci_interrupt_route.h"

namespace minikvm {

struct MpTableConfig {
    uint32_t cpu_count = 1;
    uint32_t cpu_signature = 0;  // CPUID.1:EAX
    uint32_t cpu_features = 0;   // CPUID.1:EDX
    std::vector<PciInterruptRoute> pci_routes;
};

constexpr uint8_t kMpPciBusId = 0;
constexpr uint8_t kMpIsaBusId = 1;
constexpr uint32_t kIoapicAddress = 0xfec0'0000;
constexpr uint32_t kLapicAddress = 0xfee0'0000;
constexpr uint32_t kIoapicPins = 24;

// The blob to copy to guest address `address`: floating pointer, then table.
std::vector<uint8_t> build_mp_table(uint64_t address, const MpTableConfig& config);

// Byte sum, for checksums (the MP spec wants each structure to sum to 0).
uint8_t byte_sum(const uint8_t* data, size_t length);

}  // namespace minikvm
