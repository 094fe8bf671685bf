#pragma once
// MSI-X delivery without a VMM round trip: each vector of a device gets an
// eventfd bound (KVM_IRQFD) to a GSI of its own whose MSI route
// (GsiRouting) carries the vector's message. Delivering is one eventfd
// write from the thread that finished the work; KVM injects it there.
//
// Routes are made on a vector's first delivery and follow its message: a
// vector the guest reprogrammed (new CPU affinity) gets its route updated
// before the write, so the interrupt goes where the table says now. When
// KVM's routing table is full (or refuses the route) the vector falls back
// to KVM_SIGNAL_MSI, one ioctl per interrupt: slower, never lost; logged
// once per sender. The destructor unbinds the irqfds and frees the routes.
// Thread-safe.

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "devices/msi_sender.h"
#include "vmm/core/gsi_routing.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class Vm;

class IrqfdMsiSender : public MsiSender {
public:
    // `vm` and `routing` must outlive this; `name` prefixes log lines.
    IrqfdMsiSender(const Vm& vm, GsiRouting& routing, std::string name);
    ~IrqfdMsiSender() override;

    IrqfdMsiSender(const IrqfdMsiSender&) = delete;
    IrqfdMsiSender& operator=(const IrqfdMsiSender&) = delete;

    void send(uint16_t vector, const MsiMessage& message) override;
    std::string state_lines() const override;

    // Vectors with a route and an irqfd now; deliveries that took the
    // KVM_SIGNAL_MSI fallback.
    size_t routed_vectors() const;
    uint64_t direct_deliveries() const;

private:
    struct Route {
        UniqueFd event;
        uint32_t gsi = 0;
        MsiMessage message;
        uint64_t sent = 0;
    };

    // With mutex_ held: the route for `vector`, carrying `message`; null when
    // none can be had (the caller falls back). `error` says why.
    Route* route_for(uint16_t vector, const MsiMessage& message, std::string& error);
    void send_direct(uint16_t vector, const MsiMessage& message, const std::string& why);

    const Vm& vm_;
    GsiRouting& routing_;
    const std::string name_;

    mutable std::mutex mutex_;
    std::map<uint16_t, Route> routes_;
    uint64_t direct_ = 0;
    bool fallback_logged_ = false;
};

}  // namespace minikvm
