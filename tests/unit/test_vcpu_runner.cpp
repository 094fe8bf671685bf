// The signal that kicks vCPU threads out of KVM_RUN.

#include <catch2/catch.hpp>

#include <signal.h>

#include "vmm/core/vcpu_runner.h"

using minikvm::VcpuRunner;

TEST_CASE("vCPU kick: a real-time signal, leaving SIGUSR1 and SIGUSR2 to the user", "[vcpu]") {
    const int kick = VcpuRunner::kick_signal();
    CHECK(kick >= SIGRTMIN);  // glibc's own real-time signals lie below SIGRTMIN
    CHECK(kick <= SIGRTMAX);
    CHECK(kick != SIGUSR1);
    CHECK(kick != SIGUSR2);
}
