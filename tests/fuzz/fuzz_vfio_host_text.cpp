// libFuzzer target: what the VFIO host side parses that it did not write
// itself -- the --vfio-pci address a person types, sysfs's
// iommu_group/reserved_regions text, and VFIO_IOMMU_GET_INFO's capability
// chain. Built with ASan+UBSan; besides crashes it checks that a parsed
// address prints and parses back to itself and that every region and range
// it returns is well-formed.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include "vmm/backends/vfio/host_pci_address.h"
#include "vmm/backends/vfio/host_pci_device.h"
#include "vmm/backends/vfio/vfio_container.h"

using namespace minikvm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    std::string error;
    if (const auto address = parse_host_pci_address(text, error)) {
        std::string again_error;
        const auto again = parse_host_pci_address(address->to_string(), again_error);
        if (!again || *again != *address || address->device > 0x1f || address->function > 7) std::abort();
    } else if (error.empty()) {
        std::abort();  // a refusal always says why
    }

    for (const IovaRegion& region : parse_reserved_regions(text))
        if (region.end < region.start) std::abort();

    for (const VfioContainer::IovaRange& range : VfioContainer::parse_iova_ranges(std::span(data, size)))
        (void)range;  // ASan checks every read stayed inside the buffer
    return 0;
}
