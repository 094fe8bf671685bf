#pragma once
// The Linux x86 boot protocol's setup header (Documentation/arch/x86/boot.rst):
// parsing and validating a bzImage before anything is loaded.

#include <asm/bootparam.h>

#include <cstdint>
#include <span>

namespace minikvm {

struct BzImage {
    setup_header header;        // copied verbatim into boot_params.hdr
    size_t header_end;          // file offset just past the setup header
    size_t kernel_offset;       // file offset of the protected-mode kernel
    size_t kernel_size;         // its size in the file
    uint64_t init_size;         // memory the kernel needs from its load address
    uint32_t cmdline_limit;     // longest command line, without the NUL
    uint64_t initrd_address_max;  // highest byte an initrd may occupy
};

// True when `image` starts like a bzImage (boot flag and "HdrS" magic), so the
// caller can pick this loader; parse_bzimage then says what is wrong with it.
bool looks_like_bzimage(std::span<const uint8_t> image);

// Validates magic, protocol version (>= 2.06), a 64-bit entry point
// (xloadflags, 2.12+) and that the file holds the whole kernel.
// Throws VmmError(BadImage) naming the problem.
BzImage parse_bzimage(std::span<const uint8_t> image);

}  // namespace minikvm
