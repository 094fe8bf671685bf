#include "vmm/backends/vfio/dma_memlock.h"

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include "vmm/core/error.h"

namespace minikvm {

namespace {

bool has_cap_ipc_lock() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &header, data) != 0) return false;
    return (data[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32))) != 0;
}

}  // namespace

std::optional<std::string> memlock_problem(uint64_t bytes, uint64_t limit, bool has_ipc_lock) {
    if (has_ipc_lock || limit == RLIM_INFINITY || limit >= bytes) return std::nullopt;
    const uint64_t kib = (bytes + 1023) / 1024;
    return fmt::format("the locked-memory limit is {} KiB, and an assigned device pins all {} MiB of guest RAM; "
                       "raise it to at least {} KiB (ulimit -l {}, or LimitMEMLOCK= in a systemd unit) or run with "
                       "CAP_IPC_LOCK",
                       limit / 1024, bytes >> 20, kib, kib);
}

void check_memlock_for_dma(uint64_t bytes, const std::string& option) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return;  // the DMA map will say what is wrong
    if (const auto problem = memlock_problem(bytes, limit.rlim_cur, has_cap_ipc_lock()))
        fail(ExitCode::BadDevice, "{}: {}", option, *problem);
}

}  // namespace minikvm
