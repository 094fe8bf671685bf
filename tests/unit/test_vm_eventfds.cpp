// Needs /dev/kvm: tagged [kvm], so scripts/test runs them on the nested test
// host's KVM where this machine has none (meson test unit-kvm).
#include <catch2/catch.hpp>

#include <sys/eventfd.h>

#include "vmm/core/kvm.h"
#include "vmm/core/unique_fd.h"
#include "vmm/core/vm.h"

using namespace minikvm;

TEST_CASE("ioeventfds register per (port, value) and deregister", "[kvm]") {
    Kvm kvm = Kvm::open();
    Vm vm = Vm::create(kvm);
    UniqueFd queue0 = vm.add_io_eventfd(0xc010, 2, 0);
    UniqueFd queue1 = vm.add_io_eventfd(0xc010, 2, 1);  // same port, other datamatch
    CHECK(queue0.valid());
    CHECK(queue1.valid());
    CHECK_THROWS(vm.add_io_eventfd(0xc010, 2, 1));  // exact duplicate refused by KVM
    CHECK_NOTHROW(vm.remove_io_eventfd(queue1.get(), 0xc010, 2, 1));
    CHECK_THROWS(vm.remove_io_eventfd(queue1.get(), 0xc010, 2, 1));  // already gone
    CHECK_NOTHROW(vm.add_io_eventfd(0xc010, 2, 1));
}

TEST_CASE("level-triggered irqfds with a resample fd attach to a GSI and detach", "[kvm]") {
    Kvm kvm = Kvm::open();
    Vm vm = Vm::create(kvm);
    UniqueFd trigger(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    UniqueFd resample(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    CHECK_NOTHROW(vm.add_level_irqfd(trigger.get(), resample.get(), 10));
    CHECK_NOTHROW(vm.remove_irqfd(trigger.get(), 10));
}
