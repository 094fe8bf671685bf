#pragma once
// Human-readable vCPU state for the log when a guest faults.

#include <string>

#include "vmm/core/vcpu.h"

namespace minikvm {

// Multi-line dump of general, control and segment registers. Never throws:
// if the state cannot be read, says so instead.
std::string dump_registers(const Vcpu& vcpu);

}  // namespace minikvm
