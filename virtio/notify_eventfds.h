#pragma once
// Where a virtio transport gets its queue-kick eventfds from. KVM completes a
// matching port write inside the kernel and signals an eventfd; the
// transport hears it through its EventSources. Behind an interface so the
// transport works (and is tested) without a VM: then every kick arrives
// through the register write path.

#include <cstdint>

#include "vmm/core/unique_fd.h"

namespace minikvm {

class Vm;

class NotifyEventfds {
public:
    virtual ~NotifyEventfds() = default;
    // An eventfd signalled when the guest writes `length` bytes equal to
    // `datamatch` to `port`. Throws on failure.
    virtual UniqueFd add_io_eventfd(uint16_t port, uint32_t length, uint64_t datamatch) = 0;
    virtual void remove_io_eventfd(int fd, uint16_t port, uint32_t length, uint64_t datamatch) = 0;
};

// The real thing: KVM ioeventfds on `vm`, which must outlive every
// transport using it.
class KvmNotifyEventfds : public NotifyEventfds {
public:
    explicit KvmNotifyEventfds(const Vm& vm) : vm_(vm) {}

    UniqueFd add_io_eventfd(uint16_t port, uint32_t length, uint64_t datamatch) override;
    void remove_io_eventfd(int fd, uint16_t port, uint32_t length, uint64_t datamatch) override;

private:
    const Vm& vm_;
};

}  // namespace minikvm
