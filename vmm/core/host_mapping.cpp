#include "vmm/core/host_mapping.h"

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace minikvm {

HostMapping HostMapping::anonymous(size_t length) {
    // Reserve 2 MiB more than asked and keep a 2 MiB-aligned window, so the
    // kernel can back guest RAM with transparent huge pages from the first
    // byte: fewer page faults, fewer KVM mappings, and far cheaper pinning
    // when direct I/O (cache=none) reads into guest buffers.
    const size_t reserved = length + kHugePage;
    void* p = ::mmap(nullptr, reserved, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap guest RAM");
    const auto start = reinterpret_cast<uintptr_t>(p);
    const uintptr_t aligned = (start + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
    if (aligned > start) ::munmap(p, aligned - start);
    const uintptr_t end = aligned + length;
    if (start + reserved > end) ::munmap(reinterpret_cast<void*>(end), start + reserved - end);
    // Only a hint: with THP off (or "never") the guest still runs, on 4 KiB pages.
    (void)::madvise(reinterpret_cast<void*>(aligned), length, MADV_HUGEPAGE);
    return HostMapping(reinterpret_cast<void*>(aligned), length);
}

HostMapping HostMapping::shared(int fd, size_t length) {
    void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
    return HostMapping(p, length);
}

}  // namespace minikvm
