#pragma once
// Assigning a device pins all of guest RAM for DMA, and the kernel charges
// pinned pages to RLIMIT_MEMLOCK unless the process holds CAP_IPC_LOCK.
// Checked up front, so a low limit is one clear line (exit 6) instead of a
// failed DMA map halfway through setting up the machine.

#include <cstdint>
#include <optional>
#include <string>

namespace minikvm {

// The problem (one line, without the option's name), or nullopt when `bytes`
// may be pinned. `limit` is RLIMIT_MEMLOCK's soft limit (RLIM_INFINITY for
// none).
std::optional<std::string> memlock_problem(uint64_t bytes, uint64_t limit, bool has_ipc_lock);

// This process's limit and capability; throws VmmError(BadDevice) with
// `option` in front when `bytes` cannot be pinned.
void check_memlock_for_dma(uint64_t bytes, const std::string& option);

}  // namespace minikvm
