#include "devices/irq_line.h"

#include "vmm/core/vm.h"

namespace minikvm {

void KvmIrqLine::set_level(bool asserted) { vm_.set_irq_line(gsi_, asserted); }

}  // namespace minikvm
