#include "vmm/block_io.h"

#include <system_error>

#include "vmm/thread_pool_block_io.h"
#include "vmm/uring_block_io.h"

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
