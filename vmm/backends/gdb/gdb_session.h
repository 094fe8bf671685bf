#pragma once
// One gdb connection: bytes in, bytes out. The session decodes packets,
// acknowledges them (until QStartNoAckMode), parses each command, carries it
// out on a GdbTarget and frames the reply; a `-` gets the last reply again.
// It tracks what gdb selected (Hg for registers and memory, Hc for the
// legacy c/s), the breakpoints gdb inserted (removed again on detach or
// disconnect, so a guest gdb leaves never meets a stray int3), and whether
// the target is running: while it runs only Ctrl-C means something, and
// the reply to the resume is the stop reply that stopped() sends later.
//
// No I/O and no threads here: the caller writes `out` to the socket and
// calls stopped()/exited() from wherever it learns of them, one call at a
// time.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>

#include "vmm/backends/gdb/gdb_command.h"
#include "vmm/backends/gdb/gdb_packet.h"
#include "vmm/backends/gdb/gdb_target.h"

namespace minikvm::gdb {

class GdbSession {
public:
    enum class State { Stopped, Running, Detached, Killed, Exited };

    // At most this many breakpoints and watchpoints at once (gdb's are few;
    // this bounds what a hostile client can make the session remember).
    static constexpr size_t kMaxBreakpoints = 1024;

    // The target is stopped as gdb connects; `initial` is why (the `?` reply).
    GdbSession(GdbTarget& target, const StopEvent& initial);

    // Bytes from gdb; acknowledgements and replies are appended to `out`.
    void receive(std::span<const uint8_t> bytes, std::string& out);
    void receive(std::string_view bytes, std::string& out) {
        receive(std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), out);
    }

    // Everything stopped after a resume: the stop reply gdb is waiting for.
    void stopped(const StopEvent& event, std::string& out);
    // The guest ended while gdb was attached: `W` with its exit status.
    void exited(uint8_t status, std::string& out);
    // The connection closed without `D`: like a detach, with no one to answer.
    void disconnected();

    State state() const { return state_; }
    bool acknowledging() const { return ack_mode_; }

private:
    struct Inserted {
        BreakpointType type;
        uint64_t address;
        uint64_t kind;
        auto operator<=>(const Inserted&) const = default;
    };

    void handle_packet(std::string_view payload, std::string& out);
    void send(std::string_view payload, std::string& out);
    std::optional<ThreadId> resolve(const ThreadSelector& selector) const;
    std::string stop_reply(const StopEvent& event) const;
    void remove_all_breakpoints();
    bool start(std::span<const ThreadAction> actions);

    // One per command; nullopt means no reply (the target is running, or `k`).
    std::optional<std::string> handle(const cmd::HaltReason&);
    std::optional<std::string> handle(const cmd::ReadRegisters&);
    std::optional<std::string> handle(const cmd::WriteRegisters&);
    std::optional<std::string> handle(const cmd::ReadRegister&);
    std::optional<std::string> handle(const cmd::WriteRegister&);
    std::optional<std::string> handle(const cmd::ReadMemory&);
    std::optional<std::string> handle(const cmd::WriteMemory&);
    std::optional<std::string> handle(const cmd::Resume&);
    std::optional<std::string> handle(const cmd::VContQuery&);
    std::optional<std::string> handle(const cmd::VCont&);
    std::optional<std::string> handle(const cmd::Breakpoint&);
    std::optional<std::string> handle(const cmd::SelectThread&);
    std::optional<std::string> handle(const cmd::ThreadAlive&);
    std::optional<std::string> handle(const cmd::ThreadInfoFirst&);
    std::optional<std::string> handle(const cmd::ThreadInfoNext&);
    std::optional<std::string> handle(const cmd::CurrentThread&);
    std::optional<std::string> handle(const cmd::ThreadExtraInfo&);
    std::optional<std::string> handle(const cmd::Supported&);
    std::optional<std::string> handle(const cmd::ReadFeatures&);
    std::optional<std::string> handle(const cmd::Attached&);
    std::optional<std::string> handle(const cmd::Detach&);
    std::optional<std::string> handle(const cmd::Kill&);
    std::optional<std::string> handle(const cmd::StartNoAckMode&);
    std::optional<std::string> handle(const cmd::Unknown&);
    std::optional<std::string> handle(const cmd::Invalid&);

    GdbTarget& target_;
    PacketDecoder decoder_;
    State state_ = State::Stopped;
    StopEvent last_stop_;
    ThreadSelector general_thread_;   // Hg
    ThreadSelector continue_thread_;  // Hc
    bool ack_mode_ = true;
    bool gdb_swbreak_ = false;        // gdb understands swbreak/hwbreak stop reasons
    bool gdb_hwbreak_ = false;
    size_t thread_info_next_ = 0;     // where qsThreadInfo goes on
    std::string last_reply_;          // framed, for a `-`
    std::set<Inserted> breakpoints_;
};

}  // namespace minikvm::gdb
