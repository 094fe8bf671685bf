#include <catch2/catch.hpp>

#include "boot/cpuid.h"

using namespace minikvm;

namespace {
kvm_cpuid_entry2 leaf(uint32_t function, uint32_t index = 0) {
    kvm_cpuid_entry2 e{};
    e.function = function;
    e.index = index;
    return e;
}
const kvm_cpuid_entry2& find(const std::vector<kvm_cpuid_entry2>& v, uint32_t function, uint32_t index = 0) {
    for (const auto& e : v)
        if (e.function == function && e.index == index) return e;
    FAIL("leaf missing");
    return v.front();
}
}  // namespace

TEST_CASE("each vCPU sees its own APIC ID and the same topology") {
    std::vector<kvm_cpuid_entry2> supported = {leaf(1), leaf(0xb, 0), leaf(0xb, 1), leaf(0xb, 2), leaf(0x80000008),
                                               leaf(0x8000001e)};
    supported[0].ebx = 0x00000800;  // CLFLUSH size must survive
    for (uint32_t cpu = 0; cpu < 3; ++cpu) {
        auto entries = make_vcpu_cpuid(supported, cpu, 3);
        CHECK(find(entries, 1).ebx >> 24 == cpu);
        CHECK(((find(entries, 1).ebx >> 16) & 0xff) == 3);
        CHECK((find(entries, 1).ebx & 0xffff) == 0x0800);
        CHECK(find(entries, 1).ecx & (1U << 31));  // hypervisor bit
        CHECK(find(entries, 0xb, 0).edx == cpu);
        CHECK(find(entries, 0xb, 1).edx == cpu);
        CHECK(find(entries, 0xb, 1).ebx == 3);
        CHECK(find(entries, 0xb, 1).eax == 2);  // 2 bits number 3 cores
        CHECK(((find(entries, 0xb, 1).ecx >> 8) & 0xff) == 2);
        CHECK(((find(entries, 0xb, 2).ecx >> 8) & 0xff) == 0);  // no more levels
        CHECK((find(entries, 0x80000008).ecx & 0xff) == 2);
        CHECK(find(entries, 0x8000001e).eax == cpu);
    }
}

TEST_CASE("topology shift is ceil(log2)") {
    CHECK(topology_shift(1) == 0);
    CHECK(topology_shift(2) == 1);
    CHECK(topology_shift(3) == 2);
    CHECK(topology_shift(4) == 2);
    CHECK(topology_shift(5) == 3);
    CHECK(topology_shift(254) == 8);
}

TEST_CASE("the TSC frequency goes to the hypervisor timing leaf") {
    std::vector<kvm_cpuid_entry2> supported = {leaf(1), leaf(kCpuidHypervisorBase), leaf(kCpuidHypervisorBase + 1)};
    supported[1].eax = kCpuidHypervisorBase + 1;  // KVM's: signature and features
    supported[1].ebx = 0x4b4d564b;                // "KVMK"

    auto entries = make_vcpu_cpuid(supported, 0, 1, 2'345'678);
    CHECK(find(entries, kCpuidHypervisorBase).eax == kCpuidHypervisorTiming);
    CHECK(find(entries, kCpuidHypervisorBase).ebx == 0x4b4d564b);
    CHECK(find(entries, kCpuidHypervisorTiming).eax == 2'345'678);
    CHECK(find(entries, kCpuidHypervisorTiming).ebx == kKvmApicTimerKhz);
    CHECK(entries.size() == supported.size() + 1);

    SECTION("a leaf already there is overwritten, not doubled") {
        auto again = make_vcpu_cpuid(entries, 0, 1, 1'000'000);
        CHECK(again.size() == entries.size());
        CHECK(find(again, kCpuidHypervisorTiming).eax == 1'000'000);
    }
    SECTION("a higher maximum leaf is kept") {
        supported[1].eax = kCpuidHypervisorBase + 0x20;
        CHECK(find(make_vcpu_cpuid(supported, 0, 1, 1), kCpuidHypervisorBase).eax == kCpuidHypervisorBase + 0x20);
    }
}

TEST_CASE("no TSC frequency, or no hypervisor leaves: no timing leaf") {
    std::vector<kvm_cpuid_entry2> supported = {leaf(1), leaf(kCpuidHypervisorBase)};
    supported[1].eax = kCpuidHypervisorBase + 1;
    auto unknown = make_vcpu_cpuid(supported, 0, 1, 0);
    CHECK(unknown.size() == supported.size());
    CHECK(find(unknown, kCpuidHypervisorBase).eax == kCpuidHypervisorBase + 1);

    auto bare = make_vcpu_cpuid({leaf(1)}, 0, 1, 2'000'000);
    CHECK(bare.size() == 1);
}
