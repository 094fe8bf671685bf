#pragma once
// One interrupt input of the in-kernel irqchip as a device sees it.

#include <cstdint>

namespace minikvm {

class Vm;

class IrqLine {
public:
    virtual ~IrqLine() = default;
    virtual void set_level(bool asserted) = 0;
};

// Drives a GSI of the VM through KVM_IRQ_LINE.
class KvmIrqLine : public IrqLine {
public:
    KvmIrqLine(const Vm& vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
    void set_level(bool asserted) override;

private:
    const Vm& vm_;
    uint32_t gsi_;
};

}  // namespace minikvm
