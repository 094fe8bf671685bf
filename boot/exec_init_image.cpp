#include "boot/exec_init_image.h"

// Defined by boot/exec_init/exec_init_blob.S, which .incbin's the binary.
extern "C" {
extern const uint8_t minikvm_exec_init_start[];
extern const uint64_t minikvm_exec_init_size;
}

namespace minikvm {

std::span<const uint8_t> exec_init_binary() {
    return {minikvm_exec_init_start, static_cast<size_t>(minikvm_exec_init_size)};
}

}  // namespace minikvm
