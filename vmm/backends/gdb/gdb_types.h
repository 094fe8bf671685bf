#pragma once
// Words the command parser, the session and the target share.

#include <cstdint>

namespace minikvm::gdb {

// A gdb thread is a vCPU: its index + 1 (0 and -1 are the protocol's "any"
// and "all" and never name a thread).
using ThreadId = uint32_t;

// Z/z packet types, numbered as on the wire.
enum class BreakpointType : uint8_t {
    Software = 0,
    Hardware = 1,
    WriteWatch = 2,
    ReadWatch = 3,
    AccessWatch = 4,
};

enum class ResumeKind : uint8_t { Continue, Step };

}  // namespace minikvm::gdb
