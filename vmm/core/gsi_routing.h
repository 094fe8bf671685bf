#pragma once
// The one owner of KVM's interrupt routing table (KVM_SET_GSI_ROUTING).
// KVM replaces the whole table on every call, so whoever adds a route must
// know every other one: MSI(-X) vectors of emulated and assigned devices
// come and go at run time (a driver programs or masks a vector), and each
// change sends the full table. GSIs 0-23 keep the routes KVM sets up by
// itself (IOAPIC pins, and for 0-15 the PICs too); MSI routes take GSIs
// from 24 up, each bound to an irqfd by its user (Vm::add_irqfd).
//
// GsiRoutingTable is the pure part (which GSI holds which route);
// GsiRouting adds the VM and a lock, since vCPU threads (table writes) and
// the event loop may change routes concurrently.

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vmm/core/kvm_uapi.h"

namespace minikvm {

class Vm;

// One MSI message as a device writes it: address (0xFEExxxxx on x86) and data.
struct MsiMessage {
    uint64_t address = 0;
    uint32_t data = 0;
    bool operator==(const MsiMessage&) const = default;
};

class GsiRoutingTable {
public:
    static constexpr uint32_t kIoapicPins = 24;  // GSIs 0-23: the default routes
    static constexpr uint32_t kPicPins = 16;     // of those, 0-15 also reach the PICs

    // `max_routes`: KVM's limit on table entries (KVM_CAP_IRQ_ROUTING). The
    // default routes take 40 of them.
    explicit GsiRoutingTable(uint32_t max_routes) : max_routes_(max_routes) {}

    // A free GSI routed to `message`; nullopt when the table is full.
    std::optional<uint32_t> add_msi(const MsiMessage& message);
    // False when `gsi` holds no MSI route.
    bool update_msi(uint32_t gsi, const MsiMessage& message);
    bool remove_msi(uint32_t gsi);
    // The message `gsi` routes to; nullopt when it holds no MSI route.
    std::optional<MsiMessage> msi(uint32_t gsi) const;
    size_t msi_routes() const { return msi_.size(); }

    // Every entry, the default routes first, as KVM_SET_GSI_ROUTING takes them.
    std::vector<kvm_irq_routing_entry> entries() const;
    static size_t default_route_count() { return kIoapicPins + kPicPins; }

private:
    uint32_t max_routes_;
    std::map<uint32_t, MsiMessage> msi_;  // GSI -> message; lowest free GSI reused
};

class GsiRouting {
public:
    // Installs the default routes, so the table is KVM's own from the start.
    GsiRouting(const Vm& vm, uint32_t max_routes);

    // An MSI route on a free GSI, sent to KVM. nullopt with `error` set (one
    // line) when the table is full or KVM refuses it; the table is then as
    // it was.
    std::optional<uint32_t> add_msi(const MsiMessage& message, std::string& error);
    // Changes the message of a route (a vector reprogrammed); false with
    // `error` when KVM refuses (the route keeps its old message).
    bool update_msi(uint32_t gsi, const MsiMessage& message, std::string& error);
    void remove_msi(uint32_t gsi);
    size_t msi_routes() const;

private:
    // Sends the whole table; false with `error` on KVM's refusal.
    bool commit(std::string& error);

    const Vm& vm_;
    mutable std::mutex mutex_;
    GsiRoutingTable table_;
};

}  // namespace minikvm
