// The interrupt routing table's owner: KVM's default routes kept, MSI routes
// added, changed and removed with the whole table sent each time, GSIs
// reused, a full table refused cleanly; and the real /dev/kvm accepting it
// (those cases need /dev/kvm: tagged [kvm], see test_vm_eventfds.cpp).

#include <catch2/catch.hpp>

#include <sys/eventfd.h>

#include <algorithm>

#include "devices/irqfd_msi_sender.h"
#include "vmm/core/gsi_routing.h"
#include "vmm/core/kvm.h"
#include "vmm/core/unique_fd.h"
#include "vmm/core/vm.h"

using namespace minikvm;
using Catch::Matchers::Contains;

namespace {

const kvm_irq_routing_entry* find(const std::vector<kvm_irq_routing_entry>& entries, uint32_t gsi, uint32_t type) {
    auto it = std::find_if(entries.begin(), entries.end(),
                           [&](const kvm_irq_routing_entry& e) { return e.gsi == gsi && e.type == type; });
    return it == entries.end() ? nullptr : &*it;
}

}  // namespace

TEST_CASE("routing table: KVM's default routes, IOAPIC for 0-23 and the PICs for 0-15", "[gsi-routing]") {
    GsiRoutingTable table(4096);
    const auto entries = table.entries();
    REQUIRE(entries.size() == 40);
    for (uint32_t gsi = 0; gsi < 24; ++gsi) {
        const auto* ioapic = find(entries, gsi, KVM_IRQ_ROUTING_IRQCHIP);
        REQUIRE(ioapic != nullptr);
        CHECK(ioapic->u.irqchip.irqchip == KVM_IRQCHIP_IOAPIC);
        CHECK(ioapic->u.irqchip.pin == gsi);
        const auto pics = std::count_if(entries.begin(), entries.end(), [&](const kvm_irq_routing_entry& e) {
            return e.gsi == gsi && e.u.irqchip.irqchip != KVM_IRQCHIP_IOAPIC;
        });
        CHECK(pics == (gsi < 16 ? 1 : 0));
    }
    const auto slave = std::find_if(entries.begin(), entries.end(), [](const kvm_irq_routing_entry& e) {
        return e.gsi == 12 && e.u.irqchip.irqchip != KVM_IRQCHIP_IOAPIC;
    });
    CHECK(slave->u.irqchip.irqchip == KVM_IRQCHIP_PIC_SLAVE);
    CHECK(slave->u.irqchip.pin == 4);
}

TEST_CASE("routing table: MSI routes from GSI 24, changed, removed and their GSIs reused", "[gsi-routing]") {
    GsiRoutingTable table(4096);
    const auto a = table.add_msi({0xfee00000, 0x41});
    const auto b = table.add_msi({0x1'fee01000, 0x42});
    REQUIRE(a == 24u);
    REQUIRE(b == 25u);
    auto entries = table.entries();
    const auto* route = find(entries, 25, KVM_IRQ_ROUTING_MSI);
    REQUIRE(route != nullptr);
    CHECK(route->u.msi.address_lo == 0xfee01000);
    CHECK(route->u.msi.address_hi == 1);
    CHECK(route->u.msi.data == 0x42);

    CHECK(table.update_msi(24, {0xfee00000, 0x51}));
    CHECK(find(table.entries(), 24, KVM_IRQ_ROUTING_MSI)->u.msi.data == 0x51);
    CHECK_FALSE(table.update_msi(23, {0xfee00000, 0x51}));  // an IOAPIC GSI is no MSI route
    CHECK_FALSE(table.update_msi(99, {0xfee00000, 0x51}));

    CHECK(table.remove_msi(24));
    CHECK_FALSE(table.remove_msi(24));
    CHECK(find(table.entries(), 24, KVM_IRQ_ROUTING_MSI) == nullptr);
    CHECK(table.add_msi({0xfee00000, 0x43}) == 24u);  // the lowest free GSI again
    CHECK(table.add_msi({0xfee00000, 0x44}) == 26u);
}

TEST_CASE("routing table: a full table refuses another route", "[gsi-routing]") {
    GsiRoutingTable table(42);  // the 40 default routes and two more
    CHECK(table.add_msi({0xfee00000, 1}));
    CHECK(table.add_msi({0xfee00000, 2}));
    CHECK_FALSE(table.add_msi({0xfee00000, 3}));
    CHECK(table.entries().size() == 42);
    CHECK(table.remove_msi(24));
    CHECK(table.add_msi({0xfee00000, 3}) == 24u);
}

TEST_CASE("routing on /dev/kvm: the table is accepted and MSI routes take irqfds", "[gsi-routing][kvm]") {
    Kvm kvm = Kvm::open();
    Vm vm = Vm::create(kvm);
    REQUIRE(kvm.max_irq_routes() >= 64);
    GsiRouting routing(vm, kvm.max_irq_routes());
    std::string error;
    const auto gsi = routing.add_msi({0xfee00000, 0x30}, error);
    REQUIRE(gsi);
    UniqueFd trigger(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    CHECK_NOTHROW(vm.add_irqfd(trigger.get(), *gsi));
    CHECK(routing.update_msi(*gsi, {0xfee01000, 0x31}, error));
    CHECK_FALSE(routing.update_msi(*gsi + 1, {0xfee01000, 0x31}, error));
    CHECK_THAT(error, Contains("has no MSI route"));
    CHECK_NOTHROW(vm.remove_irqfd(trigger.get(), *gsi));
    routing.remove_msi(*gsi);
    CHECK(routing.msi_routes() == 0);
    // The existing level irqfd on an IOAPIC pin still works with our table.
    UniqueFd resample(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    CHECK_NOTHROW(vm.add_level_irqfd(trigger.get(), resample.get(), 10));
    CHECK_NOTHROW(vm.remove_irqfd(trigger.get(), 10));
}

TEST_CASE("routing on /dev/kvm: our own limit and KVM's refusal are clean errors", "[gsi-routing][kvm]") {
    Kvm kvm = Kvm::open();
    Vm vm = Vm::create(kvm);
    GsiRouting small(vm, 41);
    std::string error;
    CHECK(small.add_msi({0xfee00000, 1}, error));
    CHECK_FALSE(small.add_msi({0xfee00000, 2}, error));
    CHECK_THAT(error, Contains("routing table is full (41 routes)"));
    CHECK(small.msi_routes() == 1);

    // A table past KVM's limit: KVM refuses it, and the error says so.
    std::vector<kvm_irq_routing_entry> too_many(kvm.max_irq_routes() + 1);
    for (uint32_t i = 0; i < too_many.size(); ++i) {
        too_many[i].gsi = i;
        too_many[i].type = KVM_IRQ_ROUTING_MSI;
        too_many[i].u.msi.address_lo = 0xfee00000;
    }
    CHECK_THROWS(vm.set_gsi_routing(too_many));
}

TEST_CASE("IrqfdMsiSender: a route and an irqfd per vector, following its message; a full table falls back",
          "[gsi-routing][kvm]") {
    Kvm kvm = Kvm::open();
    Vm vm = Vm::create(kvm);
    // Room for one MSI route next to the 40 default ones.
    GsiRouting routing(vm, static_cast<uint32_t>(GsiRoutingTable::default_route_count() + 1));
    {
        IrqfdMsiSender sender(vm, routing, "test-device");
        sender.send(0, {0xfee00000, 0x30});
        CHECK(sender.routed_vectors() == 1);
        CHECK(routing.msi_routes() == 1);
        sender.send(0, {0xfee00000, 0x30});
        sender.send(0, {0xfee01000, 0x31});  // reprogrammed: the route follows
        CHECK(routing.msi_routes() == 1);
        CHECK(sender.direct_deliveries() == 0);
        // No room for vector 1's route: KVM_SIGNAL_MSI instead, not a lost interrupt.
        sender.send(1, {0xfee00000, 0x32});
        CHECK(sender.routed_vectors() == 1);
        CHECK(sender.direct_deliveries() == 1);
        const std::string state = sender.state_lines();
        CHECK_THAT(state, Contains("msix vector 0 irqfd gsi=24 sent=3\n"));
        CHECK_THAT(state, Contains("msix direct KVM_SIGNAL_MSI deliveries=1\n"));
    }
    // The destructor gave the route back.
    CHECK(routing.msi_routes() == 0);
}
