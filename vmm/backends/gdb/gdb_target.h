#pragma once
// What the gdb session needs from the machine it debugs: the side that owns
// the vCPUs implements this. All-stop is the target's job: when resume()
// lets threads run and any of them stops (a breakpoint, a finished step, an
// interrupt() request), the target stops every vCPU before it reports the
// stop with GdbSession::stopped(). The session calls the target only while
// everything is stopped, except interrupt().

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/backends/gdb/gdb_types.h"
#include "vmm/backends/gdb/x86_registers.h"

namespace minikvm::gdb {

enum class TargetStatus : uint8_t {
    Ok,
    Error,        // refused (no free debug register, a bad length or alignment, unmapped memory)
    Unsupported,  // this kind of breakpoint does not exist here: gdb may fall back
};

struct ThreadAction {
    enum class Kind : uint8_t { Stay, Continue, Step };
    ThreadId thread;
    Kind kind;
    friend bool operator==(const ThreadAction&, const ThreadAction&) = default;
};

enum class StopReason : uint8_t {
    Halted,              // stopped for no reason gdb set up (the first instruction, on attach)
    SoftwareBreakpoint,  // an int3 gdb inserted (Z0); RIP must be the int3's address
    HardwareBreakpoint,  // a debug-register instruction breakpoint (Z1)
    Watchpoint,          // a debug-register data breakpoint (Z2-Z4): see watch_*
    SingleStep,
    Interrupted,         // interrupt() was honoured (gdb's Ctrl-C)
};

struct StopEvent {
    ThreadId thread;
    StopReason reason;
    BreakpointType watch_type = BreakpointType::WriteWatch;  // Watchpoint only
    uint64_t watch_address = 0;                              // Watchpoint only
};

class GdbTarget {
public:
    virtual ~GdbTarget() = default;

    // Every thread (vCPU), in order; never empty.
    virtual std::vector<ThreadId> threads() const = 0;
    // One line for `info threads`, e.g. "vCPU 0".
    virtual std::string thread_name(ThreadId thread) const = 0;

    virtual std::optional<X86RegisterFile> read_registers(ThreadId thread) = 0;
    virtual bool write_registers(ThreadId thread, const X86RegisterFile& registers) = 0;

    // Guest-virtual memory as `thread` sees it (its own page tables). Returns
    // the bytes done: fewer than asked where an address is not mapped.
    virtual size_t read_memory(ThreadId thread, uint64_t address, std::span<uint8_t> data) = 0;
    virtual size_t write_memory(ThreadId thread, uint64_t address, std::span<const uint8_t> data) = 0;

    // `kind` is the breakpoint's instruction length (Z0/Z1) or the watched length (Z2-Z4).
    virtual TargetStatus insert_breakpoint(BreakpointType type, uint64_t address, uint64_t kind) = 0;
    virtual TargetStatus remove_breakpoint(BreakpointType type, uint64_t address, uint64_t kind) = 0;

    // One action for every thread; false if the target cannot.
    virtual bool resume(std::span<const ThreadAction> actions) = 0;
    // Ctrl-C: stop everything soon and report StopReason::Interrupted. Called while running.
    virtual void interrupt() = 0;
    // gdb is leaving (or gone): the session has removed its breakpoints; let everything run.
    virtual void detach() = 0;
    // gdb's kill: end the VM.
    virtual void kill() = 0;
};

}  // namespace minikvm::gdb
