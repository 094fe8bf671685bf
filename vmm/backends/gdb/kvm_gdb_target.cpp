#include "vmm/backends/gdb/kvm_gdb_target.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <system_error>

#include "vmm/backends/gdb/kvm_x86_registers.h"
#include "vmm/core/guest_page_walk.h"

namespace minikvm::gdb {

namespace {

constexpr uint32_t kBreakpointVector = 3;  // #BP
constexpr uint32_t kDebugVector = 1;       // #DB
constexpr uint64_t kDr6SingleStep = 1ULL << 14;  // BS
constexpr uint8_t kInt3 = 0xcc;

// KVM_GUESTDBG_BLOCKIRQ (Linux 5.16) may be missing from older headers.
#ifdef KVM_GUESTDBG_BLOCKIRQ
constexpr uint32_t kBlockIrq = KVM_GUESTDBG_BLOCKIRQ;
#else
constexpr uint32_t kBlockIrq = 0x00100000;
#endif

}  // namespace

KvmGdbTarget::KvmGdbTarget(std::vector<const Vcpu*> vcpus, const GuestMemory& memory, VcpuGate& gate,
                           uint32_t guest_debug_flags, std::function<void()> kill)
    : vcpus_(std::move(vcpus)),
      memory_(memory),
      gate_(gate),
      guest_debug_flags_(guest_debug_flags),
      kill_(std::move(kill)),
      stop_event_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      actions_(vcpus_.size(), ThreadAction::Kind::Continue),
      stepping_over_(vcpus_.size(), false) {
    if (!stop_event_) throw std::system_error(errno, std::generic_category(), "eventfd");
}

void KvmGdbTarget::clear_stop_fd() const {
    uint64_t count = 0;
    [[maybe_unused]] ssize_t n = ::read(stop_event_.get(), &count, sizeof(count));
}

std::optional<StopEvent> KvmGdbTarget::take_stop() {
    std::lock_guard lock(mutex_);
    std::optional<StopEvent> event = pending_;
    pending_.reset();
    if (event) last_thread_ = event->thread;
    return event;
}

ThreadId KvmGdbTarget::current_thread() const {
    std::lock_guard lock(mutex_);
    return last_thread_;
}

const Vcpu* KvmGdbTarget::vcpu_of(ThreadId thread) const {
    if (thread == 0 || thread > vcpus_.size()) return nullptr;
    return vcpus_[thread - 1];
}

std::optional<PagingRegisters> KvmGdbTarget::paging(const Vcpu& vcpu) const {
    try {
        const kvm_sregs sregs = vcpu.sregs();
        return PagingRegisters{sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer};
    } catch (const std::exception& error) {
        spdlog::warn("gdb: vCPU {}: {}", vcpu.index(), error.what());
        return std::nullopt;
    }
}

std::vector<ThreadId> KvmGdbTarget::threads() const {
    std::vector<ThreadId> ids;
    for (size_t i = 0; i < vcpus_.size(); ++i) ids.push_back(static_cast<ThreadId>(i + 1));
    return ids;
}

std::string KvmGdbTarget::thread_name(ThreadId thread) const { return fmt::format("vCPU {}", thread - 1); }

std::optional<X86RegisterFile> KvmGdbTarget::read_registers(ThreadId thread) {
    const Vcpu* vcpu = vcpu_of(thread);
    if (vcpu == nullptr) return std::nullopt;
    try {
        return registers_from_kvm(KvmCpuState{vcpu->regs(), vcpu->sregs(), vcpu->fpu()});
    } catch (const std::exception& error) {
        spdlog::warn("gdb: reading vCPU {}'s registers: {}", vcpu->index(), error.what());
        return std::nullopt;
    }
}

bool KvmGdbTarget::write_registers(ThreadId thread, const X86RegisterFile& registers) {
    const Vcpu* vcpu = vcpu_of(thread);
    if (vcpu == nullptr) return false;
    try {
        const KvmCpuState before{vcpu->regs(), vcpu->sregs(), vcpu->fpu()};
        KvmCpuState after = before;
        registers_to_kvm(registers, after);
        // Only what changed goes back: KVM_SET_SREGS and _FPU are not free
        // of side effects (a CR write resets the MMU context).
        if (std::memcmp(&before.regs, &after.regs, sizeof(kvm_regs)) != 0) vcpu->set_regs(after.regs);
        if (std::memcmp(&before.sregs, &after.sregs, sizeof(kvm_sregs)) != 0) vcpu->set_sregs(after.sregs);
        if (std::memcmp(&before.fpu, &after.fpu, sizeof(kvm_fpu)) != 0) vcpu->set_fpu(after.fpu);
        return true;
    } catch (const std::exception& error) {
        spdlog::warn("gdb: writing vCPU {}'s registers: {}", vcpu->index(), error.what());
        return false;
    }
}

size_t KvmGdbTarget::read_memory(ThreadId thread, uint64_t address, std::span<uint8_t> data) {
    const Vcpu* vcpu = vcpu_of(thread);
    if (vcpu == nullptr) return 0;
    const std::optional<PagingRegisters> registers = paging(*vcpu);
    if (!registers) return 0;
    const size_t done = read_virtual(memory_, *registers, address, data);
    // gdb sees the guest's bytes, not our int3s.
    std::lock_guard lock(mutex_);
    for (auto it = software_.lower_bound(address); it != software_.end() && it->first - address < done; ++it)
        data[it->first - address] = it->second.original;
    return done;
}

size_t KvmGdbTarget::write_memory(ThreadId thread, uint64_t address, std::span<const uint8_t> data) {
    const Vcpu* vcpu = vcpu_of(thread);
    if (vcpu == nullptr) return 0;
    const std::optional<PagingRegisters> registers = paging(*vcpu);
    if (!registers) return 0;
    const size_t done = write_virtual(memory_, *registers, address, data);
    // A write over one of our int3s changes the byte the int3 stands for.
    std::lock_guard lock(mutex_);
    for (auto it = software_.lower_bound(address); it != software_.end() && it->first - address < done; ++it) {
        it->second.original = data[it->first - address];
        memory_.write(it->second.physical, std::span(&kInt3, 1));
    }
    return done;
}

TargetStatus KvmGdbTarget::insert_breakpoint(BreakpointType type, uint64_t address, uint64_t kind) {
    std::lock_guard lock(mutex_);
    if (type == BreakpointType::Software) {
        if (software_.count(address)) return TargetStatus::Ok;
        const Vcpu* vcpu = vcpu_of(last_thread_);
        const std::optional<PagingRegisters> registers = vcpu ? paging(*vcpu) : std::nullopt;
        if (!registers) return TargetStatus::Error;
        const auto translated = translate_virtual(memory_, *registers, address);
        if (!std::holds_alternative<PageTranslation>(translated)) return TargetStatus::Error;
        const uint64_t physical = std::get<PageTranslation>(translated).physical;
        uint8_t original = 0;
        if (!memory_.read(physical, std::span(&original, 1)) || !memory_.write(physical, std::span(&kInt3, 1)))
            return TargetStatus::Error;
        software_[address] = SoftwareBreakpoint{physical, original};
        return TargetStatus::Ok;
    }
    switch (hardware_.insert(type, address, kind)) {
        case X86DebugRegisters::Result::Ok: return TargetStatus::Ok;
        case X86DebugRegisters::Result::Unsupported: return TargetStatus::Unsupported;
        case X86DebugRegisters::Result::NoRoom:
        case X86DebugRegisters::Result::Invalid: return TargetStatus::Error;
    }
    return TargetStatus::Error;
}

TargetStatus KvmGdbTarget::remove_breakpoint(BreakpointType type, uint64_t address, uint64_t kind) {
    std::lock_guard lock(mutex_);
    if (type == BreakpointType::Software) {
        auto it = software_.find(address);
        if (it == software_.end()) return TargetStatus::Error;
        memory_.write(it->second.physical, std::span(&it->second.original, 1));
        software_.erase(it);
        return TargetStatus::Ok;
    }
    return hardware_.remove(type, address, kind) ? TargetStatus::Ok : TargetStatus::Error;
}

void KvmGdbTarget::apply_debug(size_t index, uint32_t extra) {
    const Vcpu& vcpu = *vcpus_[index];
    kvm_guest_debug debug{};
    uint32_t control = extra;
    if (!software_.empty()) control |= KVM_GUESTDBG_USE_SW_BP;
    const bool step = actions_[index] == ThreadAction::Kind::Step || stepping_over_[index];
    if (step) control |= KVM_GUESTDBG_SINGLESTEP | (guest_debug_flags_ & kBlockIrq);
    if (!hardware_.empty()) {
        std::optional<uint64_t> skip;
        if (stepping_over_[index]) skip = vcpu.regs().rip;
        control |= KVM_GUESTDBG_USE_HW_BP;
        const auto addresses = hardware_.addresses();
        for (size_t i = 0; i < addresses.size(); ++i) debug.arch.debugreg[i] = addresses[i];
        debug.arch.debugreg[7] = hardware_.dr7(skip);
    }
    if (control != 0) control |= KVM_GUESTDBG_ENABLE;
    debug.control = control;
    vcpu.set_guest_debug(debug);
}

bool KvmGdbTarget::resume(std::span<const ThreadAction> actions) {
    std::vector<bool> may_run(vcpus_.size(), false);
    {
        std::lock_guard lock(mutex_);
        try {
            for (const ThreadAction& action : actions) {
                if (action.thread == 0 || action.thread > vcpus_.size()) return false;
                actions_[action.thread - 1] = action.kind;
            }
            for (size_t i = 0; i < vcpus_.size(); ++i) {
                may_run[i] = actions_[i] != ThreadAction::Kind::Stay;
                stepping_over_[i] = may_run[i] && hardware_.has_instruction_breakpoint(vcpus_[i]->regs().rip);
                apply_debug(i);
            }
        } catch (const std::exception& error) {
            spdlog::warn("gdb: cannot resume: {}", error.what());
            return false;
        }
        pending_.reset();
    }
    clear_stop_fd();
    gate_.open(may_run);
    return true;
}

void KvmGdbTarget::stop(const StopEvent& event) {
    {
        std::lock_guard lock(mutex_);
        if (pending_ && pending_->reason != StopReason::Interrupted) return;  // the first hit wins
        pending_ = event;
    }
    gate_.close();
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_event_.get(), &one, sizeof(one));
}

void KvmGdbTarget::interrupt() {
    {
        std::lock_guard lock(mutex_);
        if (pending_) return;
    }
    stop(StopEvent{current_thread(), StopReason::Interrupted});
}

void KvmGdbTarget::detach() {
    {
        std::lock_guard lock(mutex_);
        // The session removed its breakpoints; anything left goes too.
        for (const auto& [address, breakpoint] : software_)
            memory_.write(breakpoint.physical, std::span(&breakpoint.original, 1));
        software_.clear();
        hardware_.clear();
        for (size_t i = 0; i < vcpus_.size(); ++i) {
            actions_[i] = ThreadAction::Kind::Continue;
            stepping_over_[i] = false;
            try {
                apply_debug(i);
            } catch (const std::exception& error) {
                spdlog::warn("gdb: detaching vCPU {}: {}", i, error.what());
            }
        }
        pending_.reset();
    }
    clear_stop_fd();
    gate_.open_all();
}

void KvmGdbTarget::kill() { kill_(); }

void KvmGdbTarget::debug_exit(const Vcpu& vcpu, const kvm_debug_exit_arch& exit) {
    const size_t index = vcpu.index();
    const ThreadId thread = static_cast<ThreadId>(index + 1);
    std::optional<StopEvent> event;
    {
        std::lock_guard lock(mutex_);
        if (exit.exception == kBreakpointVector) {
            if (software_.count(exit.pc)) {
                event = StopEvent{thread, StopReason::SoftwareBreakpoint};
            } else {
                // The guest's own int3: it gets its #BP.
                apply_debug(index, KVM_GUESTDBG_INJECT_BP);
                return;
            }
        } else if (exit.exception == kDebugVector) {
            const auto hit = hardware_.hit(exit.dr6);
            if (stepping_over_[index] && !hit) {
                stepping_over_[index] = false;
                if (actions_[index] != ThreadAction::Kind::Step) {
                    apply_debug(index);  // off the breakpoint: now it may fire again
                    return;
                }
                event = StopEvent{thread, StopReason::SingleStep};
            } else if (hit && hit->type == BreakpointType::Hardware) {
                event = StopEvent{thread, StopReason::HardwareBreakpoint};
            } else if (hit) {
                event = StopEvent{thread, StopReason::Watchpoint, hit->type, hit->address};
            } else if (actions_[index] == ThreadAction::Kind::Step || (exit.dr6 & kDr6SingleStep)) {
                event = StopEvent{thread, StopReason::SingleStep};
            } else {
                apply_debug(index, KVM_GUESTDBG_INJECT_DB);  // not ours: the guest's #DB
                return;
            }
            stepping_over_[index] = false;
        } else {
            event = StopEvent{thread, StopReason::Halted};
        }
    }
    stop(*event);
}

bool KvmGdbTarget::internal_error(const Vcpu& vcpu) {
    const ThreadId thread = static_cast<ThreadId>(vcpu.index() + 1);
    {
        std::lock_guard lock(mutex_);
        if (software_.empty()) return false;
        const kvm_regs regs = vcpu.regs();
        const kvm_sregs sregs = vcpu.sregs();
        const uint64_t linear = regs.rip + ((sregs.efer & (1ULL << 10)) && sregs.cs.l ? 0 : sregs.cs.base);
        auto it = software_.find(linear);
        if (it == software_.end()) return false;
        uint8_t byte = 0;
        if (!memory_.read(it->second.physical, std::span(&byte, 1)) || byte != kInt3) return false;
        if (!warned_internal_error_) {
            warned_internal_error_ = true;
            spdlog::warn("gdb: KVM could not run the int3 at {:#x} (KVM_EXIT_INTERNAL_ERROR, as on PVM hosts for "
                         "guest kernel code); taken as the breakpoint's hit", linear);
        }
    }
    stop(StopEvent{thread, StopReason::SoftwareBreakpoint});
    return true;
}

}  // namespace minikvm::gdb
