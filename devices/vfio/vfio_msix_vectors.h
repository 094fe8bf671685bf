#pragma once
// An assigned device's MSI-X vectors on their way into the guest, with no
// minikvm thread in the path. VFIO signals vector v's eventfd when the
// device sends v. While the guest's table lets v through (MSI-X on, neither
// the function nor v masked, an interrupt message), that eventfd is a KVM
// irqfd on an MSI route carrying v's message: the host's interrupt handler
// injects it straight into the guest. While v is masked the irqfd is
// unbound and the signal waits in the eventfd's counter:
// - collect_pending() turns it into v's pending bit, for a guest that reads
//   the PBA;
// - binding an eventfd that holds a count makes KVM inject it at once, so
//   unmasking delivers what came while masked, once (signals coalesce in
//   the counter, as pending bits do);
// - deliver() is the table's Deliver: a pending bit set by
//   collect_pending() goes back into the counter on unmask.
//
// A vector KVM cannot route (its routing table full) stays unbound and is
// logged: its interrupts wait in the eventfd. Thread-safe; lock order:
// this object, then the table.

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "devices/msix_table.h"
#include "vmm/core/gsi_routing.h"
#include "vmm/core/unique_fd.h"

namespace minikvm {

class Vm;

class VfioMsixVectors {
public:
    // `vm` and `routing` null: nothing is ever bound (unit tests without KVM).
    VfioMsixVectors(uint16_t count, const Vm* vm, GsiRouting* routing, std::string name);
    // Unbinds every irqfd and frees its route.
    ~VfioMsixVectors();

    VfioMsixVectors(const VfioMsixVectors&) = delete;
    VfioMsixVectors& operator=(const VfioMsixVectors&) = delete;

    // One eventfd per vector, for VFIO_DEVICE_SET_IRQS.
    std::span<const int32_t> eventfds() const { return fds_; }

    // Brings the binding of `vector` (or every vector) in line with `table`.
    void sync(uint16_t vector, const MsixTable& table);
    void sync_all(const MsixTable& table);
    // Every irqfd unbound (MSI-X turned off); counts left waiting are dropped.
    void unbind_all();
    // Unbound vectors whose eventfd holds a count: signalled into `table`,
    // where they become pending bits (or are delivered, if unmasked since).
    void collect_pending(MsixTable& table);
    // An interrupt the table lets through now (a pending vector unmasked).
    void deliver(uint16_t vector);

    size_t bound_vectors() const;
    // Lines for the state dump: one per bound vector.
    std::string state_lines() const;

private:
    struct Vector {
        UniqueFd event;
        std::optional<uint32_t> gsi;  // bound to an irqfd on this GSI
        MsiMessage message;           // what the route carries
        bool failure_logged = false;
    };
    void sync_locked(uint16_t vector, const MsixTable& table);
    void unbind_locked(uint16_t vector);

    const Vm* const vm_;
    GsiRouting* const routing_;
    const std::string name_;
    std::vector<int32_t> fds_;

    mutable std::mutex mutex_;
    std::vector<Vector> vectors_;
};

}  // namespace minikvm
