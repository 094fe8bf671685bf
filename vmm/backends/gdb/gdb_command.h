#pragma once
// GDB remote-protocol commands, parsed from a packet's payload into typed
// values by a pure function that trusts nothing (gdb manual, "Packets").
// Every number must fit in 64 bits, every length must match its data and
// stay within a packet, every field must be there: otherwise the result is
// Invalid, which the session answers with an error reply. Commands minikvm
// does not implement are Unknown, answered with the empty reply that tells
// gdb so.
//
// Left out on purpose: qOffsets (the kernel's relocation is not known to
// minikvm; gdb then applies none, and KASLR needs `nokaslr` or
// add-symbol-file), extended mode (`!`, `R`, `vRun`), multiprocess thread
// ids, non-stop mode, range stepping and conditional breakpoints, none of
// which the session advertises.

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "vmm/backends/gdb/gdb_types.h"

namespace minikvm::gdb {

// Largest m/M/X transfer: its hex or binary form must fit in a packet.
inline constexpr uint64_t kMaxMemoryTransfer = 0x2000;

// A thread-id field: a thread, or the protocol's 0 ("any") or -1 ("all").
struct ThreadSelector {
    enum class Kind : uint8_t { Any, All, One };
    Kind kind = Kind::Any;
    ThreadId id = 0;  // Kind::One only
    friend bool operator==(const ThreadSelector&, const ThreadSelector&) = default;
};

namespace cmd {
struct HaltReason {};                                    // ?
struct ReadRegisters {};                                 // g
struct WriteRegisters { std::vector<uint8_t> image; };   // G
struct ReadRegister { uint64_t number; };                // p n
struct WriteRegister { uint64_t number; std::vector<uint8_t> value; };  // P n=v
struct ReadMemory { uint64_t address; uint64_t length; };               // m
struct WriteMemory { uint64_t address; std::vector<uint8_t> data; };    // M (hex) and X (binary)
// c/s/C/S [addr]: a signal to deliver means nothing to a VM and is dropped.
struct Resume { ResumeKind kind; bool has_address; uint64_t address; };
struct VContQuery {};
struct VContAction { ResumeKind kind; ThreadSelector thread; };  // no thread given: All
struct VCont { std::vector<VContAction> actions; };
struct Breakpoint { bool insert; BreakpointType type; uint64_t address; uint64_t kind; };  // Z/z
struct SelectThread { char operation; ThreadSelector thread; };   // H g / H c
struct ThreadAlive { ThreadSelector thread; };                    // T
struct ThreadInfoFirst {};                                        // qfThreadInfo
struct ThreadInfoNext {};                                         // qsThreadInfo
struct CurrentThread {};                                          // qC
struct ThreadExtraInfo { ThreadSelector thread; };                // qThreadExtraInfo,id
struct Supported { bool swbreak; bool hwbreak; };                 // qSupported: what gdb offers
struct ReadFeatures { std::string annex; uint64_t offset; uint64_t length; };  // qXfer:features:read
struct Attached {};                                               // qAttached
struct Detach {};                                                 // D
struct Kill { bool needs_reply; };                                // k (no reply), vKill (OK)
struct StartNoAckMode {};
struct Unknown {};
// Malformed: the error number the reply carries.
struct Invalid { uint8_t error; };
}  // namespace cmd

using Command = std::variant<cmd::HaltReason, cmd::ReadRegisters, cmd::WriteRegisters, cmd::ReadRegister,
                             cmd::WriteRegister, cmd::ReadMemory, cmd::WriteMemory, cmd::Resume, cmd::VContQuery,
                             cmd::VCont, cmd::Breakpoint, cmd::SelectThread, cmd::ThreadAlive, cmd::ThreadInfoFirst,
                             cmd::ThreadInfoNext, cmd::CurrentThread, cmd::ThreadExtraInfo, cmd::Supported,
                             cmd::ReadFeatures, cmd::Attached, cmd::Detach, cmd::Kill, cmd::StartNoAckMode,
                             cmd::Unknown, cmd::Invalid>;

// Error numbers of `E NN` replies (errno values, as gdb's own stub uses).
inline constexpr uint8_t kErrorPermission = 0x01;  // EPERM: the target refused
inline constexpr uint8_t kErrorNoThread = 0x03;    // ESRCH: no such thread
inline constexpr uint8_t kErrorFault = 0x0e;       // EFAULT: memory not mapped
inline constexpr uint8_t kErrorInvalid = 0x16;     // EINVAL: malformed packet
inline constexpr uint8_t kErrorTooBig = 0x22;      // ERANGE: past a limit

Command parse_command(std::string_view payload);

}  // namespace minikvm::gdb
