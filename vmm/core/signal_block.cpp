#include "vmm/core/signal_block.h"

#include <pthread.h>

namespace minikvm {

SignalBlock::SignalBlock(std::initializer_list<int> signals) {
    sigemptyset(&blocked_);
    for (int signal : signals) sigaddset(&blocked_, signal);
    ::pthread_sigmask(SIG_BLOCK, &blocked_, &previous_);
}

SignalBlock::~SignalBlock() { ::pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }

}  // namespace minikvm
