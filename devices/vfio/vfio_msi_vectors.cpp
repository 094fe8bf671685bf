#include "devices/vfio/vfio_msi_vectors.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/core/vm.h"

namespace minikvm {

VfioMsiVectors::VfioMsiVectors(uint16_t count, const Vm* vm, GsiRouting* routing, std::string name,
                               std::string kind)
    : vm_(vm), routing_(routing), name_(std::move(name)), kind_(std::move(kind)), vectors_(count) {
    for (Vector& vector : vectors_) {
        vector.event = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!vector.event) throw std::system_error(errno, std::generic_category(), "eventfd");
        fds_.push_back(vector.event.get());
    }
}

VfioMsiVectors::~VfioMsiVectors() { unbind_all(); }

void VfioMsiVectors::sync(uint16_t vector, std::optional<MsiMessage> wanted) {
    std::lock_guard lock(mutex_);
    if (vector < vectors_.size()) sync_locked(vector, wanted);
}

void VfioMsiVectors::sync_all(const Lookup& lookup) {
    std::lock_guard lock(mutex_);
    for (size_t vector = 0; vector < vectors_.size(); ++vector)
        sync_locked(static_cast<uint16_t>(vector), lookup(static_cast<uint16_t>(vector)));
}

void VfioMsiVectors::sync_locked(uint16_t index, const std::optional<MsiMessage>& wanted) {
    Vector& vector = vectors_[index];
    if (!wanted) {
        unbind_locked(index);
        return;
    }
    if (vm_ == nullptr || routing_ == nullptr) return;
    std::string error;
    if (vector.gsi) {
        if (vector.message == *wanted) return;
        // The guest moved the vector (new CPU affinity): the route follows.
        if (routing_->update_msi(*vector.gsi, *wanted, error)) {
            vector.message = *wanted;
            return;
        }
        unbind_locked(index);
    } else {
        const std::optional<uint32_t> gsi = routing_->add_msi(*wanted, error);
        if (gsi) {
            try {
                vm_->add_irqfd(vector.event.get(), *gsi);
                vector.gsi = gsi;
                vector.message = *wanted;
                spdlog::debug("{}: {} vector {} on GSI {}", name_, kind_, index, *gsi);
                return;
            } catch (const std::system_error& failure) {
                error = fmt::format("binding an irqfd to GSI {}: {}", *gsi, failure.what());
                routing_->remove_msi(*gsi);
            }
        }
    }
    if (!vector.failure_logged) {
        vector.failure_logged = true;
        spdlog::error("{}: {} vector {} cannot reach the guest: {}; its interrupts wait until it is reprogrammed",
                      name_, kind_, index, error);
    }
}

void VfioMsiVectors::unbind_locked(uint16_t index) {
    Vector& vector = vectors_[index];
    if (!vector.gsi) return;
    try {
        vm_->remove_irqfd(vector.event.get(), *vector.gsi);
        routing_->remove_msi(*vector.gsi);
    } catch (const std::exception& failure) {
        spdlog::warn("{}: releasing {} vector {} (GSI {}): {}", name_, kind_, index, *vector.gsi, failure.what());
    }
    vector.gsi.reset();
}

void VfioMsiVectors::unbind_all() {
    std::lock_guard lock(mutex_);
    for (size_t vector = 0; vector < vectors_.size(); ++vector) {
        unbind_locked(static_cast<uint16_t>(vector));
        uint64_t count = 0;
        (void)!::read(vectors_[vector].event.get(), &count, sizeof count);
    }
}

std::vector<uint16_t> VfioMsiVectors::take_waiting() {
    std::lock_guard lock(mutex_);
    std::vector<uint16_t> waiting;
    for (size_t index = 0; index < vectors_.size(); ++index) {
        Vector& vector = vectors_[index];
        if (vector.gsi) continue;  // KVM takes its signals
        uint64_t count = 0;
        if (::read(vector.event.get(), &count, sizeof count) == static_cast<ssize_t>(sizeof count) && count != 0)
            waiting.push_back(static_cast<uint16_t>(index));
    }
    return waiting;
}

void VfioMsiVectors::deliver(uint16_t vector) {
    if (vector >= fds_.size()) return;
    const uint64_t one = 1;
    // Cannot fail short of a counter at its maximum, which coalescing
    // makes harmless: the vector is signalled either way.
    (void)!::write(fds_[vector], &one, sizeof one);
}

size_t VfioMsiVectors::bound_vectors() const {
    std::lock_guard lock(mutex_);
    size_t bound = 0;
    for (const Vector& vector : vectors_) bound += vector.gsi.has_value();
    return bound;
}

std::string VfioMsiVectors::state_lines() const {
    std::lock_guard lock(mutex_);
    std::string out;
    for (size_t index = 0; index < vectors_.size(); ++index)
        if (vectors_[index].gsi)
            out += fmt::format("{} vector {} irqfd gsi={} addr={:#x} data={:#x}\n", kind_ == "MSI" ? "msi" : "msix",
                               index, *vectors_[index].gsi,
                               vectors_[index].message.address, vectors_[index].message.data);
    return out;
}

}  // namespace minikvm
