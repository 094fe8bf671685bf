#pragma once
// Where a virtio transport gets its queue-kick eventfds from. KVM completes a
// matching port write inside the kernel and signals an eventfd; an event loop
// hears it. Behind an interface so the transport works (and is tested)
// without a VM: then every kick arrives through the register write path.

#include <cstdint>
#include <functional>

#include "vmm/unique_fd.h"

namespace minikvm {

class EventLoop;
class Vm;

class NotifyEventfds {
public:
    virtual ~NotifyEventfds() = default;
    // An eventfd signalled when the guest writes `length` bytes equal to
    // `datamatch` to `port`. Throws on failure.
    virtual UniqueFd add_io_eventfd(uint16_t port, uint32_t length, uint64_t datamatch) = 0;
    virtual void remove_io_eventfd(int fd, uint16_t port, uint32_t length, uint64_t datamatch) = 0;
    // Run `handler` (which drains `fd`) whenever `fd` is readable, until unwatch().
    // After unwatch() returns the handler is not running and never runs again.
    virtual void watch(int fd, std::function<void()> handler) = 0;
    virtual void unwatch(int fd) = 0;
};

// The real thing: KVM ioeventfds on `vm`, heard by `loop`. Both must outlive
// every transport using it.
class KvmNotifyEventfds : public NotifyEventfds {
public:
    KvmNotifyEventfds(const Vm& vm, EventLoop& loop) : vm_(vm), loop_(loop) {}

    UniqueFd add_io_eventfd(uint16_t port, uint32_t length, uint64_t datamatch) override;
    void remove_io_eventfd(int fd, uint16_t port, uint32_t length, uint64_t datamatch) override;
    void watch(int fd, std::function<void()> handler) override;
    void unwatch(int fd) override;

private:
    const Vm& vm_;
    EventLoop& loop_;
};

}  // namespace minikvm
