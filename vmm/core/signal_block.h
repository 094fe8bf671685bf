#pragma once
// Blocks signals in the calling thread for its lifetime. Threads created
// meanwhile inherit the block, which is the point: the machine reads its stop
// signals from a signalfd, and a helper thread started before the block
// (the event loop, say) would otherwise take SIGTERM's default action and
// kill the process mid-shutdown.

#include <signal.h>

#include <initializer_list>

namespace minikvm {

class SignalBlock {
public:
    explicit SignalBlock(std::initializer_list<int> signals);
    ~SignalBlock();
    SignalBlock(const SignalBlock&) = delete;
    SignalBlock& operator=(const SignalBlock&) = delete;

    const sigset_t& blocked() const { return blocked_; }

private:
    sigset_t blocked_{};
    sigset_t previous_{};
};

}  // namespace minikvm
