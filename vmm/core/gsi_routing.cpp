#include "vmm/core/gsi_routing.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "vmm/core/vm.h"

namespace minikvm {

namespace {

kvm_irq_routing_entry irqchip_route(uint32_t gsi, uint32_t chip, uint32_t pin) {
    kvm_irq_routing_entry entry{};
    entry.gsi = gsi;
    entry.type = KVM_IRQ_ROUTING_IRQCHIP;
    entry.u.irqchip.irqchip = chip;
    entry.u.irqchip.pin = pin;
    return entry;
}

}  // namespace

std::optional<uint32_t> GsiRoutingTable::add_msi(const MsiMessage& message) {
    if (default_route_count() + msi_.size() >= max_routes_) return std::nullopt;
    // The lowest free GSI above the IOAPIC's: removed vectors' GSIs come back.
    uint32_t gsi = kIoapicPins;
    for (const auto& [used, unused] : msi_) {
        if (used != gsi) break;
        ++gsi;
    }
    msi_.emplace(gsi, message);
    return gsi;
}

bool GsiRoutingTable::update_msi(uint32_t gsi, const MsiMessage& message) {
    auto it = msi_.find(gsi);
    if (it == msi_.end()) return false;
    it->second = message;
    return true;
}

bool GsiRoutingTable::remove_msi(uint32_t gsi) { return msi_.erase(gsi) == 1; }

std::optional<MsiMessage> GsiRoutingTable::msi(uint32_t gsi) const {
    const auto it = msi_.find(gsi);
    return it == msi_.end() ? std::nullopt : std::optional(it->second);
}

std::vector<kvm_irq_routing_entry> GsiRoutingTable::entries() const {
    std::vector<kvm_irq_routing_entry> entries;
    entries.reserve(default_route_count() + msi_.size());
    // KVM's own default (arch/x86/kvm/irq_comm.c): every IOAPIC pin, and the
    // legacy ones on the PICs as well.
    for (uint32_t gsi = 0; gsi < kIoapicPins; ++gsi) {
        entries.push_back(irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
        if (gsi < kPicPins)
            entries.push_back(irqchip_route(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8));
    }
    for (const auto& [gsi, message] : msi_) {
        kvm_irq_routing_entry entry{};
        entry.gsi = gsi;
        entry.type = KVM_IRQ_ROUTING_MSI;
        entry.u.msi.address_lo = static_cast<uint32_t>(message.address);
        entry.u.msi.address_hi = static_cast<uint32_t>(message.address >> 32);
        entry.u.msi.data = message.data;
        entries.push_back(entry);
    }
    return entries;
}

GsiRouting::GsiRouting(const Vm& vm, uint32_t max_routes) : vm_(vm), table_(max_routes) {
    std::string error;
    if (!commit(error)) throw std::runtime_error(error);
}

std::optional<uint32_t> GsiRouting::add_msi(const MsiMessage& message, std::string& error) {
    std::lock_guard lock(mutex_);
    const std::optional<uint32_t> gsi = table_.add_msi(message);
    if (!gsi) {
        error = fmt::format("no free GSI for an MSI route: KVM's routing table is full ({} routes)",
                            GsiRoutingTable::default_route_count() + table_.msi_routes());
        return std::nullopt;
    }
    if (!commit(error)) {
        table_.remove_msi(*gsi);
        return std::nullopt;
    }
    return gsi;
}

bool GsiRouting::update_msi(uint32_t gsi, const MsiMessage& message, std::string& error) {
    std::lock_guard lock(mutex_);
    const std::optional<MsiMessage> old = table_.msi(gsi);
    if (!old) {
        error = fmt::format("GSI {} has no MSI route", gsi);
        return false;
    }
    table_.update_msi(gsi, message);
    if (commit(error)) return true;
    table_.update_msi(gsi, *old);
    return false;
}

void GsiRouting::remove_msi(uint32_t gsi) {
    std::lock_guard lock(mutex_);
    if (!table_.remove_msi(gsi)) return;
    // A smaller table cannot be refused for size; a failure here is the host's.
    std::string error;
    if (!commit(error)) throw std::runtime_error(error);
}

size_t GsiRouting::msi_routes() const {
    std::lock_guard lock(mutex_);
    return table_.msi_routes();
}

bool GsiRouting::commit(std::string& error) {
    try {
        vm_.set_gsi_routing(table_.entries());
        return true;
    } catch (const std::system_error& failure) {
        error = fmt::format("KVM refused the interrupt routing table ({} entries): {}",
                            GsiRoutingTable::default_route_count() + table_.msi_routes(), failure.what());
        return false;
    }
}

}  // namespace minikvm
