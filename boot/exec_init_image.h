#pragma once
// The static init of `minikvm --exec` (boot/exec_init/exec_init.c), built
// with the C compiler and glibc's libc.a at build time and embedded into
// minikvm (boot/exec_init/meson.build), so minikvm needs no file beside it.

#include <cstdint>
#include <span>

namespace minikvm {

// The init's ELF bytes, for build_exec_initramfs().
std::span<const uint8_t> exec_init_binary();

}  // namespace minikvm
