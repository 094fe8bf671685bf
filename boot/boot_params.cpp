#include "boot/boot_params.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "boot/memory_layout.h"

namespace minikvm {

std::vector<E820Entry> build_e820_map(const std::vector<MemoryRegion>& regions) {
    std::vector<E820Entry> map;
    for (const MemoryRegion& region : regions) {
        if (region.guest_address != 0) {
            map.push_back({region.guest_address, region.size, kE820Ram});
            continue;
        }
        // The first region holds the legacy PC layout below 1 MiB.
        map.push_back({0, layout::kEbda, kE820Ram});
        map.push_back({layout::kEbda, layout::kBaseMemoryEnd - layout::kEbda, kE820Reserved});
        map.push_back({layout::kBiosArea, layout::kBiosAreaEnd - layout::kBiosArea, kE820Reserved});
        if (region.size > layout::kHighMemory)
            map.push_back({layout::kHighMemory, region.size - layout::kHighMemory, kE820Ram});
    }
    return map;
}

boot_params make_boot_params(const BootParamsInput& input) {
    boot_params params;
    std::memset(&params, 0, sizeof(params));
    setup_header& hdr = params.hdr;
    if (input.bzimage_header) {
        hdr = *input.bzimage_header;
    } else {
        // An ELF vmlinux has no setup header: provide the fields the kernel reads.
        hdr.boot_flag = 0xaa55;
        hdr.header = 0x53726448;  // "HdrS"
        hdr.version = 0x020f;
        hdr.kernel_alignment = 0x0100'0000;
        hdr.cmdline_size = input.command_line_size;  // a bzImage states its own limit here
    }
    hdr.type_of_loader = 0xff;  // "undefined" boot loader ID
    hdr.loadflags |= 0x01;      // LOADED_HIGH
    hdr.vid_mode = 0xffff;      // "normal"
    hdr.cmd_line_ptr = static_cast<uint32_t>(input.command_line_address);
    params.ext_cmd_line_ptr = static_cast<uint32_t>(input.command_line_address >> 32);
    hdr.ramdisk_image = static_cast<uint32_t>(input.initrd_address);
    params.ext_ramdisk_image = static_cast<uint32_t>(input.initrd_address >> 32);
    hdr.ramdisk_size = static_cast<uint32_t>(input.initrd_size);
    params.ext_ramdisk_size = static_cast<uint32_t>(input.initrd_size >> 32);

    params.acpi_rsdp_addr = input.acpi_rsdp_address;  // read by 2.14+ kernels; older ones scan

    if (input.e820.size() > E820_MAX_ENTRIES_ZEROPAGE) throw std::length_error("e820 map too long");
    params.e820_entries = static_cast<uint8_t>(input.e820.size());
    for (size_t i = 0; i < input.e820.size(); ++i) {
        params.e820_table[i].addr = input.e820[i].address;
        params.e820_table[i].size = input.e820[i].size;
        params.e820_table[i].type = input.e820[i].type;
    }
    return params;
}

}  // namespace minikvm
