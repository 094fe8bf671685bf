// libFuzzer target: arbitrary guest memory and ring state fed to the
// split-virtqueue engine (see virtio/virtqueue_fuzz.h for the input layout),
// built with ASan+UBSan when meson's `fuzz` option is on (clang only).

#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>

#include "virtio/virtqueue_fuzz.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // Every broken ring logs a line; millions of them would only slow the run.
    spdlog::set_level(spdlog::level::off);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    return minikvm::fuzz_virtqueue(data, size);
}
