#pragma once
// A GdbTarget for the session's unit tests and fuzz target: two or more
// threads with register files, a window of readable guest-virtual memory,
// and a record of every breakpoint, resume, interrupt, detach and kill. It
// checks the session's promises: the target is never touched while running
// (except interrupt), and every resume names each thread exactly once.

#include <array>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "vmm/backends/gdb/gdb_target.h"

namespace minikvm::gdb {

class FakeGdbTarget : public GdbTarget {
public:
    static constexpr uint64_t kMemoryBase = 0x1000;
    static constexpr uint64_t kMemorySize = 0x2000;

    explicit FakeGdbTarget(size_t thread_count = 2) {
        for (ThreadId id = 1; id <= thread_count; ++id) {
            X86RegisterFile file;
            file.set(X86Reg::Rip, 0x1000 * id);
            file.set(X86Reg::Rax, id);
            registers[id] = file;
        }
        for (size_t i = 0; i < memory.size(); ++i) memory[i] = static_cast<uint8_t>(i);
    }

    std::vector<ThreadId> threads() const override {
        std::vector<ThreadId> ids;
        for (const auto& entry : registers) ids.push_back(entry.first);
        return ids;
    }
    std::string thread_name(ThreadId thread) const override { return "vCPU " + std::to_string(thread - 1); }

    std::optional<X86RegisterFile> read_registers(ThreadId thread) override {
        check_stopped();
        auto found = registers.find(thread);
        if (found == registers.end()) std::abort();  // the session resolves threads first
        return found->second;
    }
    bool write_registers(ThreadId thread, const X86RegisterFile& file) override {
        check_stopped();
        if (registers.count(thread) == 0) std::abort();
        registers[thread] = file;
        return true;
    }

    size_t read_memory(ThreadId, uint64_t address, std::span<uint8_t> data) override {
        check_stopped();
        size_t done = 0;
        for (; done < data.size() && inside(address + done); ++done) data[done] = memory[address + done - kMemoryBase];
        return done;
    }
    size_t write_memory(ThreadId, uint64_t address, std::span<const uint8_t> data) override {
        check_stopped();
        size_t done = 0;
        for (; done < data.size() && inside(address + done); ++done) memory[address + done - kMemoryBase] = data[done];
        return done;
    }

    TargetStatus insert_breakpoint(BreakpointType type, uint64_t address, uint64_t kind) override {
        check_stopped();
        ++breakpoint_calls;
        if (type == BreakpointType::ReadWatch) return TargetStatus::Unsupported;
        bool hardware = type != BreakpointType::Software;
        if (hardware && hardware_in_use() >= 4) return TargetStatus::Error;
        if (type == BreakpointType::Software && !inside(address)) return TargetStatus::Error;
        inserted.insert({type, address, kind});
        return TargetStatus::Ok;
    }
    TargetStatus remove_breakpoint(BreakpointType type, uint64_t address, uint64_t kind) override {
        check_stopped();
        ++breakpoint_calls;
        if (inserted.erase({type, address, kind}) == 0) std::abort();  // the session removes only what it inserted
        return TargetStatus::Ok;
    }

    bool resume(std::span<const ThreadAction> actions) override {
        check_stopped();
        std::vector<ThreadId> named;
        for (const ThreadAction& action : actions) named.push_back(action.thread);
        if (named != threads()) std::abort();
        last_resume.assign(actions.begin(), actions.end());
        running = true;
        return true;
    }
    void interrupt() override {
        if (!running) std::abort();
        ++interrupts;
    }
    void detach() override {
        check_stopped();
        detached = true;
    }
    void kill() override {
        check_stopped();
        killed = true;
    }

    // The fake's side of a stop: everything stops, then the session is told.
    void stop() { running = false; }

    size_t hardware_in_use() const {
        size_t count = 0;
        for (const auto& breakpoint : inserted) count += std::get<0>(breakpoint) != BreakpointType::Software;
        return count;
    }

    std::map<ThreadId, X86RegisterFile> registers;
    std::array<uint8_t, kMemorySize> memory{};
    std::set<std::tuple<BreakpointType, uint64_t, uint64_t>> inserted;
    std::vector<ThreadAction> last_resume;
    size_t breakpoint_calls = 0;
    size_t interrupts = 0;
    bool running = false;
    bool detached = false;
    bool killed = false;

private:
    static bool inside(uint64_t address) { return address >= kMemoryBase && address - kMemoryBase < kMemorySize; }
    void check_stopped() const {
        if (running) std::abort();
    }
};

}  // namespace minikvm::gdb
