#pragma once
// One interrupt input of the in-kernel irqchip as a device sees it.

#include <cstdint>
#include <optional>

namespace minikvm {

class Vm;

class IrqLine {
public:
    virtual ~IrqLine() = default;
    virtual void set_level(bool asserted) = 0;
    // The in-kernel irqchip input this line drives, when it is one: a device
    // whose interrupt comes from the host kernel (an assigned device's INTx)
    // binds an irqfd to it instead of calling set_level().
    virtual std::optional<uint32_t> gsi() const { return std::nullopt; }
};

// Drives a GSI of the VM through KVM_IRQ_LINE.
class KvmIrqLine : public IrqLine {
public:
    KvmIrqLine(const Vm& vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
    void set_level(bool asserted) override;
    std::optional<uint32_t> gsi() const override { return gsi_; }

private:
    const Vm& vm_;
    uint32_t gsi_;
};

}  // namespace minikvm
