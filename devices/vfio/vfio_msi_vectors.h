#pragma once
// An assigned device's MSI or MSI-X vectors on their way into the guest,
// with no minikvm thread in the path. VFIO signals vector v's eventfd when
// the device sends v. While the guest lets v through (the capability on,
// neither the function nor v masked, bus mastering on, an interrupt
// message: the owner's Lookup says), that eventfd is a KVM irqfd on an MSI
// route carrying v's message: the host's interrupt handler injects it
// straight into the guest. While v is masked the irqfd is unbound and the
// signal waits in the eventfd's counter:
// - take_waiting() hands it over, for an MSI-X PBA the guest reads;
// - binding an eventfd that holds a count makes KVM inject it at once, so
//   unmasking delivers what came while masked, once (signals coalesce in
//   the counter, as pending bits do);
// - deliver() puts a signal back (an MSI-X pending bit the table delivers
//   on unmask).
//
// A vector KVM cannot route (its routing table full) stays unbound and is
// logged: its interrupts wait in the eventfd. Thread-safe; lock order:
// this object, then the table.

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/core/gsi_routing.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class Vm;

class VfioMsiVectors {
public:
    // `vm` and `routing` null: nothing is ever bound (unit tests without KVM).
    // `name` and `kind` ("MSI-X", "MSI") prefix log lines.
    VfioMsiVectors(uint16_t count, const Vm* vm, GsiRouting* routing, std::string name, std::string kind);
    // Unbinds every irqfd and frees its route.
    ~VfioMsiVectors();

    VfioMsiVectors(const VfioMsiVectors&) = delete;
    VfioMsiVectors& operator=(const VfioMsiVectors&) = delete;

    // One eventfd per vector, for VFIO_DEVICE_SET_IRQS.
    std::span<const int32_t> eventfds() const { return fds_; }

    // Where a vector goes now; nullopt: held (masked, off, not a message).
    using Lookup = std::function<std::optional<MsiMessage>(uint16_t vector)>;

    uint16_t count() const { return static_cast<uint16_t>(fds_.size()); }
    // Brings the binding of `vector` in line with `wanted`, or of every
    // vector with `lookup`.
    void sync(uint16_t vector, std::optional<MsiMessage> wanted);
    void sync_all(const Lookup& lookup);
    // Every irqfd unbound (the capability turned off); counts left waiting
    // are dropped.
    void unbind_all();
    // Unbound vectors whose eventfd held a count, now drained.
    std::vector<uint16_t> take_waiting();
    // Signals `vector` again (it goes where its binding says).
    void deliver(uint16_t vector);

    size_t bound_vectors() const;
    // Lines for the state dump: one per bound vector ("msix vector 3 irqfd ...").
    std::string state_lines() const;

private:
    struct Vector {
        UniqueFd event;
        std::optional<uint32_t> gsi;  // bound to an irqfd on this GSI
        MsiMessage message;           // what the route carries
        bool failure_logged = false;
    };
    void sync_locked(uint16_t vector, const std::optional<MsiMessage>& wanted);
    void unbind_locked(uint16_t vector);

    const Vm* const vm_;
    GsiRouting* const routing_;
    const std::string name_;
    const std::string kind_;
    std::vector<int32_t> fds_;

    mutable std::mutex mutex_;
    std::vector<Vector> vectors_;
};

}  // namespace minikvm
