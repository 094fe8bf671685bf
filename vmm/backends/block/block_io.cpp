#include "vmm/backends/block/block_io.h"

#include <system_error>

#include "vmm/backends/block/thread_pool_block_io.h"
#include "vmm/backends/block/uring_block_io.h"

namespace minikvm {

std::unique_ptr<BlockIo> make_block_io(int fd, DiskAio preferred, unsigned depth, std::string& fallback_reason) {
    if (preferred == DiskAio::IoUring) {
        try {
            return std::make_unique<UringBlockIo>(fd, depth);
        } catch (const std::system_error& error) {
            fallback_reason = error.what();
        }
    }
    return std::make_unique<ThreadPoolBlockIo>(fd);
}

}  // namespace minikvm
