#include "vmm/core/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <system_error>

#include "vmm/core/error.h"

namespace minikvm {

namespace {

struct RequiredCapability {
    long id;
    const char* name;
};

// Everything the VMM depends on; checked once at start so a missing feature
// is one clear line instead of a failure deep inside device setup.
constexpr RequiredCapability kRequiredCapabilities[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
};

}  // namespace

Kvm Kvm::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int error = errno;
        if (error == ENOENT)
            fail(ExitCode::KvmUnavailable,
                 "{} not found: load the KVM module (modprobe kvm_intel or kvm_amd) or enable virtualization "
                 "in the firmware",
                 path);
        if (error == EACCES || error == EPERM)
            fail(ExitCode::KvmUnavailable,
                 "{}: permission denied: add yourself to the 'kvm' group (sudo usermod -aG kvm $USER) or run as root",
                 path);
        fail(ExitCode::KvmUnavailable, "cannot open {}: {}", path, std::strerror(error));
    }
    Kvm kvm{UniqueFd(fd)};
    int version = ::ioctl(fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION)
        fail(ExitCode::KvmUnavailable, "{}: KVM API version {} is not the supported version {}", path, version,
             KVM_API_VERSION);
    for (const RequiredCapability& capability : kRequiredCapabilities) {
        if (kvm.check_extension(capability.id) <= 0)
            fail(ExitCode::KvmUnavailable, "{}: this KVM lacks {}, which minikvm needs", path, capability.name);
    }
    return kvm;
}

int Kvm::check_extension(long capability) const { return ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability); }

uint32_t Kvm::max_irq_routes() const {
    const int n = check_extension(KVM_CAP_IRQ_ROUTING);
    return n > 0 ? static_cast<uint32_t>(n) : 0;
}

int Kvm::recommended_vcpus() const {
    int n = check_extension(KVM_CAP_NR_VCPUS);
    return n > 0 ? n : 4;  // the API documents 4 when the capability is absent
}

int Kvm::max_vcpus() const {
    int n = check_extension(KVM_CAP_MAX_VCPUS);
    return n > 0 ? n : recommended_vcpus();
}

size_t Kvm::vcpu_mmap_size() const {
    int size = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size <= 0) throw std::system_error(errno, std::generic_category(), "KVM_GET_VCPU_MMAP_SIZE");
    return static_cast<size_t>(size);
}

std::vector<kvm_cpuid_entry2> Kvm::supported_cpuid() const {
    // The ioctl says E2BIG until the buffer is large enough.
    for (uint32_t capacity = 64; capacity <= 4096; capacity *= 2) {
        size_t bytes = sizeof(kvm_cpuid2) + capacity * sizeof(kvm_cpuid_entry2);
        auto buffer = std::make_unique<uint8_t[]>(bytes);
        std::memset(buffer.get(), 0, bytes);
        auto* cpuid = reinterpret_cast<kvm_cpuid2*>(buffer.get());
        cpuid->nent = capacity;
        if (::ioctl(fd_.get(), KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
            return std::vector<kvm_cpuid_entry2>(cpuid->entries, cpuid->entries + cpuid->nent);
        if (errno != E2BIG) throw std::system_error(errno, std::generic_category(), "KVM_GET_SUPPORTED_CPUID");
    }
    throw std::runtime_error("KVM_GET_SUPPORTED_CPUID: too many entries");
}

std::vector<uint32_t> Kvm::msr_index_list() const {
    kvm_msr_list probe{};
    probe.nmsrs = 0;
    // First call reports the count through E2BIG.
    if (::ioctl(fd_.get(), KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
        throw std::system_error(errno, std::generic_category(), "KVM_GET_MSR_INDEX_LIST");
    size_t bytes = sizeof(kvm_msr_list) + probe.nmsrs * sizeof(uint32_t);
    auto buffer = std::make_unique<uint8_t[]>(bytes);
    auto* list = reinterpret_cast<kvm_msr_list*>(buffer.get());
    list->nmsrs = probe.nmsrs;
    if (::ioctl(fd_.get(), KVM_GET_MSR_INDEX_LIST, list) < 0)
        throw std::system_error(errno, std::generic_category(), "KVM_GET_MSR_INDEX_LIST");
    return std::vector<uint32_t>(list->indices, list->indices + list->nmsrs);
}

}  // namespace minikvm
