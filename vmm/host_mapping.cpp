#include "vmm/host_mapping.h"

#include <cerrno>
#include <system_error>

namespace minikvm {

HostMapping HostMapping::anonymous(size_t length) {
    void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap guest RAM");
    return HostMapping(p, length);
}

HostMapping HostMapping::shared(int fd, size_t length) {
    void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
    return HostMapping(p, length);
}

}  // namespace minikvm
