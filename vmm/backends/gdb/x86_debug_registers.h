#pragma once
// gdb's hardware breakpoints and watchpoints (Z1, Z2, Z4) on the four x86
// debug registers, as KVM_SET_GUEST_DEBUG takes them: DR0-DR3 hold linear
// addresses, DR7 enables each and says what it watches (Intel SDM vol. 3B,
// 18.2.4 "Debug Control Register (DR7)"). Pure bookkeeping: no KVM here.
//
// Rules of the hardware: an instruction breakpoint has length 1 (LEN 00);
// a data breakpoint covers 1, 2, 4 or 8 bytes aligned to its length. A
// watched range that is not such a piece is split into aligned pieces, one
// register each, as long as registers are free. x86 cannot watch reads
// alone (RW 10 is I/O): a read watchpoint (Z3) is refused, as gdb's own
// x86 code does, and gdb says the target cannot do it.

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "vmm/backends/gdb/gdb_types.h"

namespace minikvm::gdb {

class X86DebugRegisters {
public:
    static constexpr size_t kSlots = 4;
    enum class Result : uint8_t { Ok, NoRoom, Invalid, Unsupported };

    // Z1 (`length` is ignored: x86 instructions breakpoints are one byte),
    // Z2 and Z4.
    Result insert(BreakpointType type, uint64_t address, uint64_t length);
    // False when no such breakpoint was inserted.
    bool remove(BreakpointType type, uint64_t address, uint64_t length);
    void clear() { slots_ = {}; }
    bool empty() const;

    // DR0-DR3 and DR7 for KVM_SET_GUEST_DEBUG (debugreg[0..3], [7]);
    // `skip` leaves one instruction breakpoint address out (stepping over it).
    std::array<uint64_t, kSlots> addresses() const;
    uint64_t dr7(std::optional<uint64_t> skip_instruction_at = std::nullopt) const;

    // An instruction breakpoint is set at `address`.
    bool has_instruction_breakpoint(uint64_t address) const;

    // What DR6's B0-B3 bits say fired: the first enabled slot whose bit is
    // set, as gdb inserted it (the whole range for a split watchpoint).
    struct Hit {
        BreakpointType type;
        uint64_t address;  // as gdb gave it
    };
    std::optional<Hit> hit(uint64_t dr6) const;

private:
    struct Slot {
        bool used = false;
        BreakpointType type = BreakpointType::Hardware;
        uint64_t address = 0;  // this piece's
        uint64_t length = 1;   // this piece's: 1, 2, 4 or 8
        uint64_t gdb_address = 0;  // the whole breakpoint's, as inserted
        uint64_t gdb_length = 0;
    };
    std::array<Slot, kSlots> slots_{};
};

// The aligned 1/2/4/8-byte pieces covering [address, address + length).
std::vector<std::pair<uint64_t, uint64_t>> watch_pieces(uint64_t address, uint64_t length);

}  // namespace minikvm::gdb
