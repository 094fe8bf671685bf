#include "boot/linux_loader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>
#include <vector>

#include "boot/boot_params.h"
#include "boot/bzimage.h"
#include "boot/elf_kernel.h"
#include "boot/memory_layout.h"
#include "vmm/core/error.h"
#include "vmm/core/host_mapping.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMiB = 1 << 20;
constexpr uint32_t kElfCommandLineLimit = 2047;  // x86 COMMAND_LINE_SIZE - 1

struct OpenFile {
    UniqueFd fd;
    uint64_t size;
};

OpenFile open_image(const std::string& path, const char* what) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) fail(ExitCode::BadImage, "{} '{}': {}", what, path, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) fail(ExitCode::BadImage, "{} '{}': {}", what, path, std::strerror(errno));
    if (!S_ISREG(st.st_mode)) fail(ExitCode::BadImage, "{} '{}' is not a regular file", what, path);
    if (st.st_size == 0) fail(ExitCode::BadImage, "{} '{}' is empty", what, path);
    return {std::move(fd), static_cast<uint64_t>(st.st_size)};
}

void read_exactly(const OpenFile& file, std::span<uint8_t> target, const std::string& path, const char* what) {
    size_t done = 0;
    while (done < target.size()) {
        ssize_t n = ::pread(file.fd.get(), target.data() + done, target.size() - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail(ExitCode::BadImage, "{} '{}': read failed: {}", what, path, n < 0 ? std::strerror(errno) : "file shrank");
        done += static_cast<size_t>(n);
    }
}

std::span<uint8_t> guest_span_or_fail(const GuestMemory& memory, uint64_t address, uint64_t size, const char* what) {
    auto span = memory.span(address, size);
    if (!span)
        fail(ExitCode::BadImage, "{} needs guest memory {:#x}-{:#x}, beyond the guest's {} MiB of RAM (raise --memory)",
             what, address, address + size, memory.size() / kMiB);
    return *span;
}

}  // namespace

const char* to_string(KernelFormat format) { return format == KernelFormat::BzImage ? "bzImage" : "ELF vmlinux"; }

LinuxBootInfo load_linux(const GuestMemory& memory, const LinuxBootFiles& files) {
    OpenFile kernel_file = open_image(files.kernel_path, "kernel");
    if (kernel_file.size > memory.size())
        fail(ExitCode::BadImage, "kernel '{}' ({} MiB) is larger than guest RAM ({} MiB)", files.kernel_path,
             kernel_file.size / kMiB, memory.size() / kMiB);
    // Mapped, not read: the loader copies each part once, straight into guest RAM.
    void* mapped = ::mmap(nullptr, kernel_file.size, PROT_READ, MAP_PRIVATE, kernel_file.fd.get(), 0);
    if (mapped == MAP_FAILED) fail(ExitCode::BadImage, "kernel '{}': {}", files.kernel_path, std::strerror(errno));
    HostMapping kernel_mapping(mapped, kernel_file.size);
    std::span<const uint8_t> image(kernel_mapping.data(), kernel_mapping.size());

    LinuxBootInfo info{};
    BootParamsInput params;
    uint32_t command_line_limit = kElfCommandLineLimit;
    uint64_t initrd_address_max = memory.low_ram_end() - 1;

    if (looks_like_bzimage(image)) {
        BzImage bz = parse_bzimage(image);
        auto target = guest_span_or_fail(memory, layout::kHighMemory, bz.init_size, "the bzImage kernel");
        std::memcpy(target.data(), image.data() + bz.kernel_offset, bz.kernel_size);
        info.format = KernelFormat::BzImage;
        info.entry = layout::kHighMemory + 0x200;  // the 64-bit entry (XLF_KERNEL_64)
        info.kernel_end = layout::kHighMemory + bz.init_size;
        params.bzimage_header = bz.header;
        command_line_limit = bz.cmdline_limit;
        initrd_address_max = std::min<uint64_t>(initrd_address_max, bz.initrd_address_max);
    } else if (looks_like_elf(image)) {
        ElfKernel elf = parse_elf_kernel(image);
        if (elf.lowest_address < layout::kHighMemory)
            fail(ExitCode::BadImage, "ELF kernel loads at {:#x}, below 1 MiB where boot data lives", elf.lowest_address);
        for (const ElfSegment& segment : elf.segments) {
            auto target = guest_span_or_fail(memory, segment.physical_address, segment.memory_size, "an ELF kernel segment");
            std::memcpy(target.data(), image.data() + segment.file_offset, segment.file_size);
            std::memset(target.data() + segment.file_size, 0, segment.memory_size - segment.file_size);
        }
        if (elf.entry < elf.lowest_address || elf.entry >= elf.end_address)
            fail(ExitCode::BadImage, "ELF entry point {:#x} is outside the kernel's segments", elf.entry);
        info.format = KernelFormat::ElfVmlinux;
        info.entry = elf.entry;
        info.kernel_end = elf.end_address;
    } else {
        fail(ExitCode::BadImage, "kernel '{}' is neither a bzImage nor an ELF vmlinux", files.kernel_path);
    }

    if (files.command_line.size() > command_line_limit)
        fail(ExitCode::Usage, "command line is {} bytes; this kernel accepts at most {}", files.command_line.size(),
             command_line_limit);
    std::vector<uint8_t> command_line(files.command_line.begin(), files.command_line.end());
    command_line.push_back(0);
    memory.write(layout::kCommandLine, command_line);
    params.command_line_address = layout::kCommandLine;
    params.command_line_size = static_cast<uint32_t>(command_line.size());

    std::optional<OpenFile> initrd_file;
    if (files.initrd_path) initrd_file = open_image(*files.initrd_path, "initrd");
    const uint64_t initrd_size = initrd_file ? initrd_file->size : files.initrd_bytes.size();
    if (initrd_size > 0) {
        const std::string name = files.initrd_path ? "initrd '" + *files.initrd_path + "'" : "the built-in initramfs";
        uint64_t lowest = (info.kernel_end + kPage - 1) & ~(kPage - 1);
        uint64_t top = std::min(memory.low_ram_end(), initrd_address_max + 1);
        if (initrd_size > top || ((top - initrd_size) & ~(kPage - 1)) < lowest)
            fail(ExitCode::BadImage, "{} ({} MiB) does not fit in guest RAM after the kernel (raise --memory)", name,
                 initrd_size / kMiB);
        uint64_t address = (top - initrd_size) & ~(kPage - 1);
        if (initrd_file) read_exactly(*initrd_file, *memory.span(address, initrd_size), *files.initrd_path, "initrd");
        else memory.write(address, files.initrd_bytes);
        info.initrd_address = address;
        info.initrd_size = initrd_size;
        params.initrd_address = address;
        params.initrd_size = initrd_size;
    }

    params.acpi_rsdp_address = files.acpi_rsdp_address;
    params.e820 = build_e820_map(memory.regions());
    memory.write_object(layout::kBootParams, make_boot_params(params));
    return info;
}

}  // namespace minikvm
