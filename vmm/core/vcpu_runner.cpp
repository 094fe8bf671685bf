#include "vmm/core/vcpu_runner.h"

#include <pthread.h>
#include <signal.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <span>

#include "vmm/core/exit_codes.h"
#include "vmm/core/register_dump.h"

namespace minikvm {

namespace {

constexpr uint64_t kRflagsInterruptEnable = 1ULL << 9;

void on_kick(int) {}  // only there so the signal interrupts KVM_RUN

void log_lines(spdlog::level::level_enum level, const std::string& text) {
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        spdlog::log(level, "{}", text.substr(start, end - start));
        start = end + 1;
    }
}

}  // namespace

VcpuRunner::VcpuRunner(Vcpu& vcpu, IoBus& io_bus, MmioBus& mmio_bus, StopRequest& stop,
                       std::chrono::steady_clock::time_point process_start)
    : vcpu_(vcpu), io_bus_(io_bus), mmio_bus_(mmio_bus), stop_(stop), process_start_(process_start) {}

VcpuRunner::~VcpuRunner() {
    request_stop();
    join();
}

// A real-time signal, leaving SIGUSR1/SIGUSR2 to the user (SIGUSR1 dumps
// device state). glibc keeps the first two or three kernel real-time
// signals for itself (thread cancellation, setxid) and SIGRTMIN already
// counts from past them, so SIGRTMIN is free for applications. Real-time
// signals queue rather than merge; that is harmless here: the handler is
// empty, and a kick whose signal cannot be queued (RLIMIT_SIGPENDING) still
// sets immediate_exit, seen at the next KVM_RUN.
int VcpuRunner::kick_signal() { return SIGRTMIN; }

void VcpuRunner::install_kick_handler() {
    struct sigaction action {};
    action.sa_handler = on_kick;
    sigemptyset(&action.sa_mask);
    ::sigaction(kick_signal(), &action, nullptr);
}

void VcpuRunner::start() { thread_ = std::thread([this] { thread_main(); }); }

void VcpuRunner::request_stop() {
    stop_requested_.store(true, std::memory_order_release);
    kick();
}

void VcpuRunner::join() {
    if (thread_.joinable()) thread_.join();
}

void VcpuRunner::request_probe() {
    probe_result_.store(ProbeResult::Pending, std::memory_order_release);
    probe_requested_.store(true, std::memory_order_release);
    kick();
}

void VcpuRunner::kick() {
    // immediate_exit covers a kick that lands while the thread is outside
    // KVM_RUN; the signal covers one that lands inside it.
    __atomic_store_n(&vcpu_.run_state().immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (thread_.joinable()) ::pthread_kill(thread_.native_handle(), kick_signal());
}

void VcpuRunner::thread_main() {
    // "vcpu0"...: what top -H, gdb and scripts/bench see.
    ::pthread_setname_np(::pthread_self(), fmt::format("vcpu{}", vcpu_.index()).c_str());
    sigset_t kick_set;
    sigemptyset(&kick_set);
    sigaddset(&kick_set, kick_signal());
    ::pthread_sigmask(SIG_UNBLOCK, &kick_set, nullptr);
    try {
        loop();
    } catch (const std::exception& error) {
        stop_.request(to_int(ExitCode::HostError), fmt::format("vCPU {}: {}", vcpu_.index(), error.what()));
    }
}

void VcpuRunner::loop() {
    bool first_run = true;
    while (!stop_requested_.load(std::memory_order_acquire)) {
        if (gate_ != nullptr) {
            gate_->pass(vcpu_.index());
            if (stop_requested_.load(std::memory_order_acquire)) return;
        }
        if (first_run) {
            const double ms =
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - process_start_).count();
            first_run_ms_.store(ms, std::memory_order_release);
            if (vcpu_.index() == 0) spdlog::info("first KVM_RUN {:.1f} ms after process start", ms);
        }
        first_run = false;
        int result = vcpu_.run();
        if (result == -EINTR || result == -EAGAIN) {
            __atomic_store_n(&vcpu_.run_state().immediate_exit, 0, __ATOMIC_SEQ_CST);
            if (probe_requested_.exchange(false)) run_probe();
            continue;
        }
        if (result < 0) {
            stop_.request(to_int(ExitCode::HostError),
                          fmt::format("vCPU {}: KVM_RUN failed: {}", vcpu_.index(), std::strerror(-result)));
            return;
        }
        if (!handle_exit()) return;
    }
}

void VcpuRunner::run_probe() {
    const uint32_t state = vcpu_.mp_state();
    const kvm_regs regs = vcpu_.regs();
    ProbeResult result = ProbeResult::Running;
    if (state == KVM_MP_STATE_UNINITIALIZED || state == KVM_MP_STATE_INIT_RECEIVED)
        result = ProbeResult::NotStarted;
    else if (state == KVM_MP_STATE_HALTED)
        result = (regs.rflags & kRflagsInterruptEnable) ? ProbeResult::HaltedIdle : ProbeResult::HaltedForGood;
    probe_rip_.store(regs.rip, std::memory_order_release);
    probe_result_.store(result, std::memory_order_release);
}

bool VcpuRunner::handle_exit() {
    kvm_run& run = vcpu_.run_state();
    switch (run.exit_reason) {
    case KVM_EXIT_IO: {
        auto* base = reinterpret_cast<uint8_t*>(&run) + run.io.data_offset;
        // String instructions (rep ins/outs) arrive as `count` back-to-back items.
        for (uint32_t i = 0; i < run.io.count; ++i) {
            std::span<uint8_t> item(base + static_cast<size_t>(i) * run.io.size, run.io.size);
            if (run.io.direction == KVM_EXIT_IO_OUT) io_bus_.write(run.io.port, item);
            else io_bus_.read(run.io.port, item);
        }
        return true;
    }
    case KVM_EXIT_MMIO: {
        std::span<uint8_t> data(run.mmio.data, std::min<uint32_t>(run.mmio.len, sizeof(run.mmio.data)));
        if (run.mmio.is_write) mmio_bus_.write(run.mmio.phys_addr, data);
        else mmio_bus_.read(run.mmio.phys_addr, data);
        return true;
    }
    case KVM_EXIT_HLT:
        // Only seen without an in-kernel LAPIC; a halt with interrupts off is final.
        if (!(vcpu_.regs().rflags & kRflagsInterruptEnable)) {
            stop_.request(to_int(ExitCode::GuestPowerOff), fmt::format("vCPU {} halted with interrupts off", vcpu_.index()));
            return false;
        }
        return true;
    case KVM_EXIT_SHUTDOWN:
        log_lines(spdlog::level::err, dump_registers(vcpu_));
        // On AMD, KVM INITs the vCPU before reporting a shutdown, so the
        // faulting state is gone; say so rather than mislead.
        if (vcpu_.regs().rip == 0xfff0 && vcpu_.sregs().cs.selector == 0xf000)
            spdlog::error("vCPU {}: these are the registers after KVM's reset (AMD hosts reset on shutdown)",
                          vcpu_.index());
        stop_.request(to_int(ExitCode::GuestCrash), fmt::format("vCPU {}: triple fault (KVM_EXIT_SHUTDOWN)", vcpu_.index()));
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        switch (run.system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
            stop_.request(to_int(ExitCode::GuestPowerOff), "guest powered off");
            return false;
        case KVM_SYSTEM_EVENT_RESET:
            stop_.request(to_int(ExitCode::GuestReboot), "guest reset");
            return false;
        default:
            stop_.request(to_int(ExitCode::GuestCrash),
                          fmt::format("vCPU {}: guest crash (system event {})", vcpu_.index(), run.system_event.type));
            return false;
        }
    case KVM_EXIT_DEBUG:
        if (debug_hook_ == nullptr) break;
        debug_hook_->debug_exit(vcpu_, run.debug.arch);
        return true;
    case KVM_EXIT_INTERNAL_ERROR: {
        if (debug_hook_ != nullptr && debug_hook_->internal_error(vcpu_)) return true;
        std::string data;
        for (uint32_t i = 0; i < std::min<uint32_t>(run.internal.ndata, 16); ++i)
            data += fmt::format(" {:#x}", run.internal.data[i]);
        log_lines(spdlog::level::err, dump_registers(vcpu_));
        stop_.request(to_int(ExitCode::GuestCrash),
                      fmt::format("vCPU {}: KVM internal error, suberror {}{}{}", vcpu_.index(), run.internal.suberror,
                                  data.empty() ? "" : ", data", data));
        return false;
    }
    case KVM_EXIT_FAIL_ENTRY:
        log_lines(spdlog::level::err, dump_registers(vcpu_));
        stop_.request(to_int(ExitCode::GuestCrash),
                      fmt::format("vCPU {}: VM entry failed, hardware reason {:#x}", vcpu_.index(),
                                  static_cast<uint64_t>(run.fail_entry.hardware_entry_failure_reason)));
        return false;
    case KVM_EXIT_INTR:
        return true;
    default:
        break;
    }
    log_lines(spdlog::level::err, dump_registers(vcpu_));
    stop_.request(to_int(ExitCode::GuestCrash),
                  fmt::format("vCPU {}: unexpected KVM exit reason {}", vcpu_.index(), run.exit_reason));
    return false;
}

}  // namespace minikvm
