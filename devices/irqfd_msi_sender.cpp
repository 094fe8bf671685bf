#include "devices/irqfd_msi_sender.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vmm/core/vm.h"

namespace minikvm {

IrqfdMsiSender::IrqfdMsiSender(const Vm& vm, GsiRouting& routing, std::string name)
    : vm_(vm), routing_(routing), name_(std::move(name)) {}

IrqfdMsiSender::~IrqfdMsiSender() {
    std::lock_guard lock(mutex_);
    for (auto& [vector, route] : routes_) {
        try {
            vm_.remove_irqfd(route.event.get(), route.gsi);
            routing_.remove_msi(route.gsi);
        } catch (const std::exception& error) {
            spdlog::warn("{}: releasing MSI-X vector {} (GSI {}): {}", name_, vector, route.gsi, error.what());
        }
    }
}

IrqfdMsiSender::Route* IrqfdMsiSender::route_for(uint16_t vector, const MsiMessage& message, std::string& error) {
    if (auto found = routes_.find(vector); found != routes_.end()) {
        Route& route = found->second;
        if (route.message == message) return &route;
        if (!routing_.update_msi(route.gsi, message, error)) return nullptr;
        route.message = message;
        return &route;
    }
    const std::optional<uint32_t> gsi = routing_.add_msi(message, error);
    if (!gsi) return nullptr;
    Route route;
    route.gsi = *gsi;
    route.message = message;
    route.event = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    try {
        if (!route.event) throw std::system_error(errno, std::generic_category(), "eventfd");
        vm_.add_irqfd(route.event.get(), route.gsi);
    } catch (const std::system_error& failure) {
        error = fmt::format("binding an irqfd to GSI {}: {}", route.gsi, failure.what());
        try {
            routing_.remove_msi(route.gsi);
        } catch (const std::exception& also) {
            // The route stays in the table unused; the caller still delivers.
            error += fmt::format(" (and removing its route: {})", also.what());
        }
        return nullptr;
    }
    spdlog::debug("{}: MSI-X vector {} on GSI {}", name_, vector, route.gsi);
    return &routes_.emplace(vector, std::move(route)).first->second;
}

void IrqfdMsiSender::send(uint16_t vector, const MsiMessage& message) {
    std::lock_guard lock(mutex_);
    std::string error;
    Route* route = route_for(vector, message, error);
    if (route == nullptr) {
        send_direct(vector, message, error);
        return;
    }
    const uint64_t one = 1;
    // The counter cannot overflow: KVM consumes it as it is written.
    if (::write(route->event.get(), &one, sizeof one) != static_cast<ssize_t>(sizeof one)) {
        send_direct(vector, message, fmt::format("irqfd write: {}", std::strerror(errno)));
        return;
    }
    ++route->sent;
}

void IrqfdMsiSender::send_direct(uint16_t vector, const MsiMessage& message, const std::string& why) {
    if (!fallback_logged_) {
        fallback_logged_ = true;
        spdlog::warn("{}: MSI-X vector {} delivered with KVM_SIGNAL_MSI instead of an irqfd: {} (logged once)", name_,
                     vector, why);
    }
    ++direct_;
    try {
        // A destination no vCPU has drops the message, as with the irqfd.
        (void)vm_.signal_msi(message.address, message.data);
    } catch (const std::system_error& failure) {
        // The host refusing an interrupt it accepted before: nothing the
        // guest did, and nothing left to try.
        spdlog::error("{}: MSI-X vector {} lost: {}", name_, vector, failure.what());
    }
}

std::string IrqfdMsiSender::state_lines() const {
    std::lock_guard lock(mutex_);
    std::string out;
    for (const auto& [vector, route] : routes_)
        out += fmt::format("msix vector {} irqfd gsi={} sent={}\n", vector, route.gsi, route.sent);
    if (direct_ != 0) out += fmt::format("msix direct KVM_SIGNAL_MSI deliveries={}\n", direct_);
    return out;
}

size_t IrqfdMsiSender::routed_vectors() const {
    std::lock_guard lock(mutex_);
    return routes_.size();
}

uint64_t IrqfdMsiSender::direct_deliveries() const {
    std::lock_guard lock(mutex_);
    return direct_;
}

}  // namespace minikvm
