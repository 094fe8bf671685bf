#include "virtio/notify_eventfds.h"

#include "vmm/core/vm.h"

namespace minikvm {

UniqueFd KvmNotifyEventfds::add_io_eventfd(uint16_t port, uint32_t length, uint64_t datamatch) {
    return vm_.add_io_eventfd(port, length, datamatch);
}

void KvmNotifyEventfds::remove_io_eventfd(int fd, uint16_t port, uint32_t length, uint64_t datamatch) {
    vm_.remove_io_eventfd(fd, port, length, datamatch);
}

}  // namespace minikvm
