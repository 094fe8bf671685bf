#pragma once
// The KVM system file descriptor (/dev/kvm): API version, capabilities and
// the host-wide queries (supported CPUID, MSR list, vCPU limits).

#include "vmm/core/kvm_uapi.h"

#include <cstdint>
#include <string>
#include <vector>

#include "vmm/core/unique_fd.h"

namespace minikvm {

class Kvm {
public:
    // Opens /dev/kvm (or `path`) and checks the API version and every
    // capability minikvm relies on; throws VmmError(KvmUnavailable) with what
    // to do when something is missing.
    static Kvm open(const std::string& path = "/dev/kvm");

    int fd() const { return fd_.get(); }
    int check_extension(long capability) const;

    int recommended_vcpus() const;
    int max_vcpus() const;
    // Entries KVM's interrupt routing table may hold (KVM_CAP_IRQ_ROUTING); 0 without routing.
    uint32_t max_irq_routes() const;
    size_t vcpu_mmap_size() const;
    std::vector<kvm_cpuid_entry2> supported_cpuid() const;
    std::vector<uint32_t> msr_index_list() const;

private:
    explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
    UniqueFd fd_;
};

}  // namespace minikvm
