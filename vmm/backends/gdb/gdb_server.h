#pragma once
// The --gdb socket: one connection at a time, served on a thread of its
// own. Why not the event loop: the stub must wait for every vCPU to park
// (all-stop) before it answers, and a vCPU may be inside a device's
// handler that needs the event loop to finish; the conversation with gdb
// is strictly one request, one reply, so a thread that blocks is simplest
// and cannot stall the devices.
//
// Lifecycle: the constructor binds and listens (errors a person can cause,
// such as an address in use, throw GdbServerError before any vCPU runs);
// start() serves; finish(status) reports the guest's end to a gdb that
// waits on a running guest (`W`), closes, and joins the thread. A second
// client is refused while one is attached. gdb going away (detach or a
// lost connection) removes its breakpoints and lets the guest run on.

#include <atomic>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "vmm/backends/gdb/gdb_address.h"
#include "vmm/backends/gdb/gdb_session.h"
#include "vmm/backends/gdb/kvm_gdb_target.h"
#include "vmm/core/unique_fd.h"
#include "vmm/core/vcpu_gate.h"

namespace minikvm::gdb {

class GdbServerError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

class GdbServer {
public:
    GdbServer(const GdbAddress& address, KvmGdbTarget& target, VcpuGate& gate);
    ~GdbServer();
    GdbServer(const GdbServer&) = delete;
    GdbServer& operator=(const GdbServer&) = delete;

    // Where it listens, with the real port when 0 was asked for.
    const GdbAddress& address() const { return address_; }
    void start();
    // The VM ended with exit status `status` (the gate is shut down).
    void finish(int status);

private:
    void serve();
    void accept_client();
    // Returns false when the connection is over.
    bool read_client();
    void take_stop();
    void close_client(bool lost);
    void send(const std::string& bytes);

    GdbAddress address_;
    KvmGdbTarget& target_;
    VcpuGate& gate_;
    UniqueFd listener_;
    UniqueFd wake_;  // eventfd: finish()
    UniqueFd client_;
    std::optional<GdbSession> session_;
    std::atomic<int> final_status_{-1};
    std::thread thread_;
};

}  // namespace minikvm::gdb
