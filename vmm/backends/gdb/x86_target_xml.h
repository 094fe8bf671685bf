#pragma once
// The target description gdb reads with qXfer:features:read:target.xml, so
// that `target remote` needs no `set architecture`: i386:x86-64 with gdb's
// core, SSE and segment-base features plus minikvm's control registers,
// made from the register table (x86_registers.h). Format: gdb manual,
// "Target Descriptions".

#include <string>

namespace minikvm::gdb {

// The whole document (a few KiB, built per call: gdb asks once per connection).
std::string x86_target_xml();

}  // namespace minikvm::gdb
