// libFuzzer target: the assigned-device model (devices/vfio/) with a device
// whose configuration space is the input's first 256 bytes (its capability
// list, BAR types, MSI and MSI-X layouts whatever they say), then a guest doing
// configuration and BAR accesses of any width at any offset, and the device
// signalling MSI-X vectors. Checked on every step: the guest never writes
// the device's header except the command register, never reaches the
// device's bytes under the emulated MSI-X table, and the identity it reads
// stays the device's.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include "devices/vfio/vfio_pci_device.h"
#include "tests/unit/fake_vfio_device.h"
#include "vmm/core/error.h"

using namespace minikvm;

namespace {

// Whether the guest's BAR byte is one of the emulated MSI-X table's.
bool table_byte(const VfioPciDevice& model, unsigned bar, uint64_t offset) {
    const MsixCapability* msix = model.msix();
    if (msix == nullptr || msix->layout().table_bar != bar) return false;
    const uint64_t start = msix->layout().table_offset;
    return offset >= start && offset < start + msix->table().table_bytes();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 256) return 0;
    test::FakeVfioDevice device;
    std::memcpy(device.config.data(), data, 256);
    device.config[0x0e] &= 0x80;  // an endpoint, so the model takes it
    for (uint32_t bar = 0; bar < 6; ++bar) device.set_region(bar, uint64_t{0x10} << (data[0x10 + bar * 4] % 12));
    device.set_irq_count(VFIO_PCI_INTX_IRQ_INDEX, 1);
    device.set_irq_count(VFIO_PCI_MSI_IRQ_INDEX, 1);
    device.set_irq_count(VFIO_PCI_MSIX_IRQ_INDEX, 2048);
    const std::array<uint8_t, 256> original = device.config;
    std::unique_ptr<VfioPciDevice> model;
    try {
        model = std::make_unique<VfioPciDevice>(device, VfioPciDevice::Kvm{}, "fuzz");
    } catch (const VmmError&) {
        return 0;  // refused with a line: fine
    }
    (void)model->bars();
    const uint32_t identity = uint32_t{original[0]} | original[1] << 8 | original[2] << 16 | uint32_t{original[3]} << 24;
    for (size_t at = 256; at + 4 <= size; at += 4) {
        const uint8_t op = data[at] % 6, where = data[at + 1];
        const size_t width = size_t{1} << (data[at + 2] % 3);
        uint8_t bytes[8] = {data[at + 3], data[at + 2], data[at + 1], data[at], 0xff, 0, 0x5a, 0xa5};
        const auto span = std::span(bytes, width);
        const unsigned bar = data[at + 2] % 6;
        const uint64_t offset = uint64_t{where} << (data[at + 3] % 8);
        device.config_writes.clear();
        const auto before = device.bar_bytes;
        switch (op) {
            case 0: model->config_read(where, span); break;
            case 1:
                model->config_write(where, span);
                model->config_written(where, static_cast<uint32_t>(width));
                break;
            case 2: model->bar_read(bar, offset, span); break;
            case 3: model->bar_write(bar, offset, span); break;
            case 4: model->bar_mapping_changed(bar, data[at + 3] & 1 ? std::optional<uint64_t>(offset << 12) : std::nullopt); break;
            case 5:  // the device signals every MSI and MSI-X vector VFIO was given
                for (const auto& call : device.irq_calls)
                    for (int32_t fd : call.fds) {
                        const uint64_t one = 1;
                        if (fd >= 0) (void)!::write(fd, &one, sizeof one);
                    }
                break;
        }
        for (uint32_t written : device.config_writes)
            if (written < 0x40 && written != 0x04 && written != 0x05) std::abort();
        if (op == 3)
            for (size_t i = 0; i < width; ++i)
                if (table_byte(*model, bar, offset + i) && before.count(bar) &&
                    before.at(bar) != device.bar_bytes.at(bar))
                    std::abort();
        uint8_t id[4];
        model->config_read(0, id);
        if ((uint32_t{id[0]} | id[1] << 8 | id[2] << 16 | uint32_t{id[3]} << 24) != identity) std::abort();
    }
    return 0;
}
