#include "boot/bzimage.h"

#include <algorithm>
#include <cstring>

#include "vmm/core/error.h"

namespace minikvm {

namespace {

constexpr size_t kSetupHeaderOffset = 0x1f1;
constexpr size_t kBootFlagOffset = 0x1fe;
constexpr size_t kMagicOffset = 0x202;
constexpr uint16_t kBootFlag = 0xaa55;
constexpr uint32_t kHeaderMagic = 0x53726448;  // "HdrS"
constexpr uint16_t kMinimumVersion = 0x0206;
constexpr uint16_t kXloadflagsVersion = 0x020c;
constexpr uint16_t kInitSizeVersion = 0x020a;
constexpr uint8_t kLoadedHigh = 0x01;
constexpr uint16_t kXlfKernel64 = 0x01;

template <typename T>
T read_le(std::span<const uint8_t> image, size_t offset) {
    T value{};
    std::memcpy(&value, image.data() + offset, sizeof(T));
    return value;
}

}  // namespace

bool looks_like_bzimage(std::span<const uint8_t> image) {
    if (image.size() < kMagicOffset + 4) return false;
    return read_le<uint16_t>(image, kBootFlagOffset) == kBootFlag &&
           read_le<uint32_t>(image, kMagicOffset) == kHeaderMagic;
}

BzImage parse_bzimage(std::span<const uint8_t> image) {
    if (!looks_like_bzimage(image)) fail(ExitCode::BadImage, "not a bzImage (no boot flag / HdrS magic)");

    // The byte at 0x201 is the jump's offset: the header ends where it lands.
    size_t header_end = 0x202 + image[0x201];
    header_end = std::min(header_end, kSetupHeaderOffset + sizeof(setup_header));
    if (image.size() < header_end) fail(ExitCode::BadImage, "truncated bzImage: setup header cut short");

    BzImage result{};
    std::memset(&result.header, 0, sizeof(result.header));
    std::memcpy(&result.header, image.data() + kSetupHeaderOffset, header_end - kSetupHeaderOffset);
    result.header_end = header_end;
    const setup_header& header = result.header;

    if (header.version < kMinimumVersion)
        fail(ExitCode::BadImage, "boot protocol {}.{:02} is too old (minikvm needs 2.06 or later)",
             header.version >> 8, header.version & 0xff);
    if (!(header.loadflags & kLoadedHigh))
        fail(ExitCode::BadImage, "zImage (loaded low) kernels are not supported; use a bzImage");
    if (header.version < kXloadflagsVersion || !(header.xloadflags & kXlfKernel64))
        fail(ExitCode::BadImage, "kernel has no 64-bit entry point (boot protocol {}.{:02}, xloadflags {:#x})",
             header.version >> 8, header.version & 0xff, header.version >= kXloadflagsVersion ? header.xloadflags : 0);

    unsigned setup_sectors = header.setup_sects == 0 ? 4 : header.setup_sects;
    result.kernel_offset = (setup_sectors + 1) * 512ULL;
    // syssize counts 16-byte paragraphs of the protected-mode kernel.
    uint64_t declared_size = static_cast<uint64_t>(header.syssize) * 16;
    if (image.size() < result.kernel_offset || image.size() - result.kernel_offset < declared_size)
        fail(ExitCode::BadImage, "truncated bzImage: header declares {} kernel bytes, file has {}", declared_size,
             image.size() < result.kernel_offset ? 0 : image.size() - result.kernel_offset);
    result.kernel_size = image.size() - result.kernel_offset;

    result.init_size = header.version >= kInitSizeVersion ? header.init_size : 0;
    result.init_size = std::max<uint64_t>(result.init_size, result.kernel_size);
    result.cmdline_limit = header.cmdline_size;  // 2.06+ always has it
    result.initrd_address_max = header.initrd_addr_max != 0 ? header.initrd_addr_max : 0x37ffffff;
    return result;
}

}  // namespace minikvm
