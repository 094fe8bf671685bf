#pragma once
// Fuzzing entry point for the split-virtqueue engine, for a libFuzzer target
// to call from LLVMFuzzerTestOneInput. Not part of minikvm_core: a fuzz
// target links virtio/virtqueue_fuzz.cpp itself.

#include <cstddef>
#include <cstdint>

namespace minikvm {

// Lays `data` out as guest memory and ring state, then pops and pushes until
// the queue is empty or broken. Always returns 0. Each broken ring logs one
// spdlog error line; a fuzz target may turn logging off in LLVMFuzzerInitialize.
int fuzz_virtqueue(const uint8_t* data, size_t size);

}  // namespace minikvm
