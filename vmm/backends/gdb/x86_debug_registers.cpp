#include "vmm/backends/gdb/x86_debug_registers.h"

namespace minikvm::gdb {

namespace {

// DR7: L0-L3 at bits 0, 2, 4, 6 (local enable); GE (bit 9) asks for exact
// data breakpoints, as debuggers set it; per slot n, RW at 16 + 4n and LEN
// at 18 + 4n.
constexpr uint64_t kDr7ExactGlobal = 1ULL << 9;
constexpr uint64_t kRwInstruction = 0b00;
constexpr uint64_t kRwWrite = 0b01;
constexpr uint64_t kRwAccess = 0b11;
// More than a hostile or confused client may make us split.
constexpr uint64_t kMaxWatchLength = 8 * X86DebugRegisters::kSlots;

uint64_t length_bits(uint64_t length) {
    switch (length) {
        case 2: return 0b01;
        case 4: return 0b11;
        case 8: return 0b10;
        default: return 0b00;
    }
}

}  // namespace

std::vector<std::pair<uint64_t, uint64_t>> watch_pieces(uint64_t address, uint64_t length) {
    std::vector<std::pair<uint64_t, uint64_t>> pieces;
    while (length > 0) {
        uint64_t size = 8;
        while (size > 1 && (address % size != 0 || size > length)) size /= 2;
        pieces.emplace_back(address, size);
        address += size;
        length -= size;
    }
    return pieces;
}

X86DebugRegisters::Result X86DebugRegisters::insert(BreakpointType type, uint64_t address, uint64_t length) {
    std::vector<std::pair<uint64_t, uint64_t>> pieces;
    switch (type) {
        case BreakpointType::Hardware:
            pieces = {{address, 1}};
            length = 1;
            break;
        case BreakpointType::WriteWatch:
        case BreakpointType::AccessWatch:
            if (length == 0 || length > kMaxWatchLength || address + length < address) return Result::Invalid;
            pieces = watch_pieces(address, length);
            break;
        case BreakpointType::ReadWatch:
        case BreakpointType::Software:
            return Result::Unsupported;
    }
    size_t free = 0;
    for (const Slot& slot : slots_) free += slot.used ? 0 : 1;
    if (pieces.size() > free) return Result::NoRoom;
    size_t next = 0;
    for (Slot& slot : slots_) {
        if (slot.used) continue;
        if (next == pieces.size()) break;
        slot = Slot{true, type, pieces[next].first, pieces[next].second, address, length};
        ++next;
    }
    return Result::Ok;
}

bool X86DebugRegisters::remove(BreakpointType type, uint64_t address, uint64_t length) {
    if (type == BreakpointType::Hardware) length = 1;
    bool found = false;
    for (Slot& slot : slots_) {
        if (slot.used && slot.type == type && slot.gdb_address == address && slot.gdb_length == length) {
            slot = Slot{};
            found = true;
        }
    }
    return found;
}

bool X86DebugRegisters::empty() const {
    for (const Slot& slot : slots_)
        if (slot.used) return false;
    return true;
}

std::array<uint64_t, X86DebugRegisters::kSlots> X86DebugRegisters::addresses() const {
    std::array<uint64_t, kSlots> result{};
    for (size_t i = 0; i < kSlots; ++i) result[i] = slots_[i].used ? slots_[i].address : 0;
    return result;
}

uint64_t X86DebugRegisters::dr7(std::optional<uint64_t> skip_instruction_at) const {
    uint64_t value = 0;
    for (size_t i = 0; i < kSlots; ++i) {
        const Slot& slot = slots_[i];
        if (!slot.used) continue;
        if (slot.type == BreakpointType::Hardware && skip_instruction_at == slot.address) continue;
        const uint64_t rw = slot.type == BreakpointType::Hardware     ? kRwInstruction
                            : slot.type == BreakpointType::WriteWatch ? kRwWrite
                                                                      : kRwAccess;
        const uint64_t len = slot.type == BreakpointType::Hardware ? 0 : length_bits(slot.length);
        value |= 1ULL << (2 * i);
        value |= (rw | (len << 2)) << (16 + 4 * i);
        value |= kDr7ExactGlobal;
    }
    return value;
}

bool X86DebugRegisters::has_instruction_breakpoint(uint64_t address) const {
    for (const Slot& slot : slots_)
        if (slot.used && slot.type == BreakpointType::Hardware && slot.address == address) return true;
    return false;
}

std::optional<X86DebugRegisters::Hit> X86DebugRegisters::hit(uint64_t dr6) const {
    for (size_t i = 0; i < kSlots; ++i)
        if (slots_[i].used && (dr6 & (1ULL << i))) return Hit{slots_[i].type, slots_[i].gdb_address};
    return std::nullopt;
}

}  // namespace minikvm::gdb
