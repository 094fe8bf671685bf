#include "vmm/app/machine.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>
#include <system_error>

#include "boot/acpi_tables.h"
#include "boot/cpuid.h"
#include "boot/exec_init_image.h"
#include "boot/exec_initramfs.h"
#include "boot/kernel_symbols.h"
#include "boot/linux_loader.h"
#include "boot/memory_layout.h"
#include "boot/mp_table.h"
#include "boot/x86_boot_state.h"
#include "devices/irqfd_level_line.h"
#include "vmm/app/boot_hints.h"
#include "vmm/app/exec_session.h"
#include "vmm/app/terminal.h"
#include "vmm/backends/console_input.h"
#include "vmm/core/error.h"
#include "vmm/core/exit_codes.h"

namespace minikvm {

namespace {

constexpr int kHaltProbeIntervalMs = 100;
// Two rounds in a row, so a vCPU caught between `cli` and a wake-up never
// counts as powered off.
constexpr int kHaltProbeRoundsForPowerOff = 2;

UniqueFd open_console_log(const std::optional<std::string>& path) {
    if (!path) return {};
    UniqueFd fd(::open(path->c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) fail(ExitCode::Usage, "--console-log {}: {}", *path, std::strerror(errno));
    return fd;
}

const char* probe_state_description(VcpuRunner::ProbeResult state) {
    switch (state) {
        case VcpuRunner::ProbeResult::NotStarted: return "never started";
        case VcpuRunner::ProbeResult::HaltedIdle: return "halted, interrupts on (idle)";
        case VcpuRunner::ProbeResult::HaltedForGood: return "halted, interrupts off";
        case VcpuRunner::ProbeResult::Running: return "running";
        case VcpuRunner::ProbeResult::Pending: return "in minikvm, not answering a probe";
    }
    return "unknown";
}

std::optional<std::vector<uint8_t>> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

uint32_t cpuid_value(const std::vector<kvm_cpuid_entry2>& entries, uint32_t function, uint32_t kvm_cpuid_entry2::*reg) {
    for (const auto& entry : entries)
        if (entry.function == function) return entry.*reg;
    return 0;
}

// Where 64-bit BARs go: above RAM and below what the guest's CPU can
// address (CPUID 0x80000008 EAX[7:0], which the vCPUs get from KVM as it
// is). Not in the e820: the guest learns it from _CRS.
PciMemory64Window pci_memory64_window(const GuestMemory& memory, const Kvm& kvm) {
    constexpr uint32_t kDefaultPhysicalBits = 36;  // what the SDM says to assume without the leaf
    uint64_t ram_end = 0;
    for (const MemoryRegion& region : memory.regions())
        ram_end = std::max(ram_end, region.guest_address + region.size);
    uint32_t physical_bits = cpuid_value(kvm.supported_cpuid(), 0x80000008, &kvm_cpuid_entry2::eax) & 0xff;
    if (physical_bits == 0) physical_bits = kDefaultPhysicalBits;
    const PciMemory64Window window = PciHostBridge::memory64_window_above(ram_end, physical_bits);
    if (window.empty())
        spdlog::info("no 64-bit PCI window: RAM reaches the guest's {}-bit physical address limit", physical_bits);
    else
        spdlog::debug("PCI 64-bit window {:#x}-{:#x} ({}-bit physical addresses)", window.start, window.end - 1,
                      physical_bits);
    return window;
}

}  // namespace

Machine::Machine(const MachineConfig& config, std::chrono::steady_clock::time_point process_start)
    : signal_block_({SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGUSR1, VcpuRunner::kick_signal()}),
      config_(config),
      process_start_(process_start),
      console_log_(open_console_log(config.console_log_path)),
      watcher_(config.fail_on),
      event_loop_(config.poll_window),
      device_context_{event_loop_, [this](std::span<const uint8_t> bytes) { console_output(1, bytes, true); },
                      [this](std::span<const uint8_t> bytes) {
                          write_to_stderr(bytes);
                          console_output(2, bytes, false);
                      }},
      virtio_devices_(create_virtio_devices(config, device_context_)),
      vfio_hosts_(probe_assigned_devices(config.vfio_devices)),
      kvm_(Kvm::open()),
      vm_(Vm::create(kvm_)),
      memory_(GuestMemory::allocate(config.memory_bytes)),
      com1_irq_(vm_, Serial8250::kCom1Irq),
      serial_(com1_irq_,
              [this](uint8_t byte) {
                  // With --exec the kernel's and the init's messages go to
                  // stderr, off the command's output -- until the status is
                  // in: the vCPUs run on for a moment ("reboot: Power down").
                  if (config_.exec && !exec_status()) write_to_stderr(std::span<const uint8_t>(&byte, 1));
                  console_output(0, std::span<const uint8_t>(&byte, 1),
                                 config_.console != ConsoleMode::None && !config_.exec);
              }),
      i8042_([this] { stop_.request(to_int(ExitCode::GuestReboot), "guest reset through the i8042 controller"); }),
      acpi_pm_([this] { stop_.request(to_int(ExitCode::GuestPowerOff), "guest powered off (ACPI S5)"); }),
      debug_exit_([this](uint8_t value) {
          stop_.request(debug_exit_status(value), fmt::format("guest wrote {:#04x} to the debug-exit port", value));
      }),
      exec_status_(
          [this](uint8_t status) {
              if (stop_.request(status, fmt::format("the command exited with status {}", status)))
                  exec_status_reported_ = status;
          },
          [this] {
              std::lock_guard lock(console_input_mutex_);
              if (console_input_) console_input_->release();
              terminal_ready_ = true;
          }),
      pvpanic_([this](uint8_t events) {
          if ((events & PvPanic::kPanicked) == 0) {
              spdlog::info("guest kernel is loading a crash kernel (pvpanic CRASH_LOADED)");
              return;
          }
          std::lock_guard lock(console_mutex_);
          pvpanic_seen_ = true;
          if (!panic_since_) panic_since_ = std::chrono::steady_clock::now();
      }),
      boot_marker_([this] {
          std::lock_guard lock(console_mutex_);
          if (boot_complete_ms_) return;  // the first one counts
          boot_complete_ms_ = ms_since_start();
          spdlog::info("guest boot complete (marker {} on port {:#x}) {:.1f} ms after process start",
                       BootCompleteMarker::kValue, BootCompleteMarker::kPort, *boot_complete_ms_);
      }),
      pci_(io_bus_, mmio_bus_, pci_intx_factory(), pci_memory64_window(memory_, kvm_)),
      memory_slots_(vm_, static_cast<uint32_t>(memory_.regions().size()),
                    static_cast<uint32_t>(std::max(kvm_.check_extension(KVM_CAP_NR_MEMSLOTS), 0))) {
    int max_cpus = std::min(kvm_.recommended_vcpus(), 254);
    if (config.cpus < 1 || config.cpus > static_cast<uint32_t>(max_cpus))
        fail(ExitCode::Usage, "--cpus {}: this host's KVM supports 1 to {} vCPUs", config.cpus, max_cpus);

    vm_.map_memory(memory_);
    if (config.exec) exec_initramfs_ = build_exec_initramfs(caller_exec_spec(config), exec_init_binary());
    LinuxBootInfo boot = load_linux(memory_, {config.kernel_path, config.initrd_path, config.command_line,
                                              layout::kAcpiTables, exec_initramfs_});
    spdlog::info("loaded {} '{}', entry {:#x}{}", to_string(boot.format), config.kernel_path, boot.entry,
                 boot.initrd_size ? fmt::format(", initrd {} KiB at {:#x}", boot.initrd_size >> 10, boot.initrd_address)
                                  : std::string());
    write_boot_tables(memory_);
    add_devices();
    set_up_vcpus(boot.entry);
    if (config.gdb) set_up_gdb();
}

Machine::~Machine() = default;

void Machine::add_devices() {
    io_bus_.add(Serial8250::kCom1Port, Serial8250::kRegisterCount, serial_);
    io_bus_.add(I8042::kBasePort, I8042::kPortCount, i8042_);
    io_bus_.add(DebugExit::kPort, 1, debug_exit_);
    if (config_.exec) io_bus_.add(ExecStatus::kPort, ExecStatus::kPortCount, exec_status_);
    io_bus_.add(CmosRtc::kBasePort, CmosRtc::kPortCount, rtc_);
    io_bus_.add(AcpiPm::kBasePort, AcpiPm::kPortCount, acpi_pm_);
    pci_.set_trace(config_.trace.pci);
    io_bus_.add(PciHostBridge::kBasePort, PciHostBridge::kPortCount, pci_);
    // POST code, DMA page registers and the delay port Linux's io_delay uses.
    io_bus_.add(0x80, 0x10, quiet_ports_);
    io_bus_.add(0xed, 1, quiet_ports_);
    io_bus_.add(PvPanic::kPort, 1, pvpanic_);
    io_bus_.add(BootCompleteMarker::kPort, 1, boot_marker_);
    add_virtio_devices();
    add_assigned_devices();
}

PciHostBridge::IrqLineFactory Machine::pci_intx_factory() {
    // INTx raised by the thread that finished the work and lowered by KVM
    // at the guest's EOI, where KVM can (see IrqfdLevelLine).
    if (kvm_.check_extension(KVM_CAP_IRQFD_RESAMPLE) > 0)
        return [this](uint32_t gsi) { return std::make_unique<IrqfdLevelLine>(&vm_, event_loop_, gsi); };
    spdlog::debug("KVM has no resampling irqfds: PCI INTx goes through KVM_IRQ_LINE");
    return [this](uint32_t gsi) { return std::make_unique<KvmIrqLine>(vm_, gsi); };
}

GsiRouting* Machine::gsi_routing() {
    if (!gsi_routing_) {
        const uint32_t max_routes = kvm_.max_irq_routes();
        if (max_routes <= GsiRoutingTable::default_route_count()) return nullptr;
        gsi_routing_ = std::make_unique<GsiRouting>(vm_, max_routes);
    }
    return gsi_routing_.get();
}

void Machine::add_assigned_devices() {
    if (config_.vfio_devices.empty()) return;
    GsiRouting* routing = gsi_routing();
    if (routing == nullptr)
        spdlog::warn("this KVM has no interrupt routing for MSI; assigned devices can use INTx only");
    vfio_ = std::make_unique<VfioAssignment>(config_.vfio_devices, std::move(vfio_hosts_), memory_,
                                             VfioPciDevice::Kvm{&vm_, routing, &memory_slots_}, pci_,
                                             config_.trace.vfio);
}

void Machine::add_virtio_devices() {
    if (config_.msix && !virtio_devices_.empty() && gsi_routing() == nullptr)
        spdlog::warn("this KVM has no interrupt routing for MSI (KVM_CAP_IRQ_ROUTING {}); virtio devices use INTx",
                     kvm_.max_irq_routes());
    for (NamedVirtioDevice& named : virtio_devices_) {
        VirtioSlot& slot = virtio_slots_.emplace_back();
        slot.name = std::move(named.name);
        slot.device = std::move(named.device);
        if (gsi_routing_) slot.msi = std::make_unique<IrqfdMsiSender>(vm_, *gsi_routing_, slot.name);
        slot.transport = std::make_unique<VirtioPciLegacy>(*slot.device, memory_, slot.name, &notify_eventfds_,
                                                           &event_loop_, slot.msi.get());
        slot.transport->set_trace(config_.trace.virtio);
        PciBdf address = pci_.register_device(*slot.transport);
        spdlog::debug("{} at PCI 00:{:02x}.0", slot.name, address.device);
        // The first console takes input and the terminal's size.
        if (auto* console = dynamic_cast<VirtioConsole*>(slot.device.get()); console && !virtio_console_)
            virtio_console_ = console;
    }
    virtio_devices_.clear();  // all moved into their slots
}

void Machine::dump_device_state(bool terminal_raw) const {
    std::string report = fmt::format("minikvm: state dump (SIGUSR1): {} virtio device(s)\n", virtio_slots_.size());
    const EventLoop::PollStats poll = event_loop_.poll_stats();
    if (poll.max_window_ns == 0)
        report += "  event loop: polling off (--poll 0)\n";
    else
        report += fmt::format("  event loop: poll window {} us of at most {} us; {} polling phases, {} found work\n",
                              poll.window_ns / 1000, poll.max_window_ns / 1000, poll.phases, poll.caught);
    for (const VirtioSlot& slot : virtio_slots_) report += slot.transport->state_report();
    if (vfio_) report += vfio_->state_report();
    // In raw mode a bare "\n" would not return the cursor.
    if (terminal_raw) {
        std::string converted;
        for (char c : report) {
            if (c == '\n') converted += '\r';
            converted += c;
        }
        report = std::move(converted);
    }
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, report.data(), report.size());
}

std::vector<std::string> Machine::warn_about_idle_devices() const {
    std::vector<std::string> warnings;
    for (const VirtioSlot& slot : virtio_slots_) {
        if (auto warning = slot.transport->never_driver_ok_warning()) {
            spdlog::warn("{}", *warning);
            warnings.push_back(std::move(*warning));
        }
    }
    return warnings;
}

std::vector<std::string> Machine::log_boot_hints(int status) const {
    BootFacts facts;
    facts.exit_status = status;
    facts.command_line = config_.command_line;
    facts.console = config_.console;
    facts.initrd_path = config_.initrd_path;
    size_t disk = 0;
    for (const VirtioSlot& slot : virtio_slots_) {
        if (slot.device->kind().type != VirtioDeviceType::Block || disk >= config_.disks.size()) continue;
        facts.disks.push_back({slot.name, config_.disks[disk++].path, slot.transport->ever_reached_driver_ok()});
    }
    {
        std::lock_guard lock(console_mutex_);
        facts.any_output = watcher_.any_output();
        for (size_t i = 0; i < static_cast<size_t>(BootDeadEnd::Count); ++i)
            facts.dead_ends[i] = watcher_.dead_end(static_cast<BootDeadEnd>(i));
    }
    std::vector<std::string> hints = boot_failure_hints(facts);
    for (const std::string& hint : hints) spdlog::warn("hint: {}", hint);
    return hints;
}

double Machine::ms_since_start() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - process_start_).count();
}

void Machine::build_report(int status, const std::string& cause, std::vector<std::string> hints) {
    report_.exit_code = status;
    report_.cause = cause;
    report_.hints = std::move(hints);
    std::lock_guard lock(console_mutex_);
    const auto lines_of = [](const ConsoleWatcher::Report& saved) {
        return RunReport::KernelReportLines{std::string(kernel_report_name(saved.kind)), saved.complete, saved.lines};
    };
    if (const auto& failure = watcher_.failure()) report_.kernel_report = lines_of(*failure);
    if (const auto& panic = watcher_.panic_report()) report_.panic_report = lines_of(*panic);
    report_.last_console_lines = watcher_.last_lines();
    report_.timings.first_kvm_run = runners_.empty() ? std::nullopt : runners_.front()->first_run_ms();
    report_.timings.first_console_byte = first_console_byte_ms_;
    report_.timings.boot_complete = boot_complete_ms_;
    report_.timings.end = ms_since_start();
}

void Machine::log_device_summaries() const {
    for (const VirtioSlot& slot : virtio_slots_)
        if (std::string summary = slot.device->exit_summary(); !summary.empty())
            spdlog::info("{} {}", slot.name, summary);
}

ConsoleInputSink* Machine::console_input_sink() {
    switch (config_.console) {
        case ConsoleMode::Serial: return &serial_;
        case ConsoleMode::Virtio: return virtio_console_;
        case ConsoleMode::None: return nullptr;
    }
    return nullptr;
}

void Machine::terminal_resized() {
    if (!virtio_console_) return;
    if (auto size = stdout_terminal_size()) virtio_console_->set_size(*size);
}

void Machine::set_up_vcpus(uint64_t entry) {
    std::vector<kvm_cpuid_entry2> supported = kvm_.supported_cpuid();
    std::vector<uint32_t> msrs = kvm_.msr_index_list();

    MpTableConfig mp;
    mp.cpu_count = config_.cpus;
    mp.cpu_signature = cpuid_value(supported, 1, &kvm_cpuid_entry2::eax);
    mp.cpu_features = cpuid_value(supported, 1, &kvm_cpuid_entry2::edx);
    mp.pci_routes = pci_.interrupt_routes();
    memory_.write(layout::kMpTable, build_mp_table(layout::kMpTable, mp));
    AcpiConfig acpi;
    acpi.cpu_count = config_.cpus;
    acpi.ioapic_id = static_cast<uint8_t>(config_.cpus);  // as in the MP table: after the CPUs
    acpi.pm1a_event_port = AcpiPm::kEventBlock;
    acpi.pm1a_event_length = AcpiPm::kEventBlockLength;
    acpi.pm1a_control_port = AcpiPm::kControlBlock;
    acpi.pm1a_control_length = AcpiPm::kControlBlockLength;
    acpi.s5_sleep_type = AcpiPm::kS5SleepType;
    acpi.pci_memory_window_start = PciHostBridge::kMemoryWindowStart;
    acpi.pci_memory_window_end = PciHostBridge::kMemoryWindowEnd;
    acpi.pci_memory64_window_start = pci_.memory64_window().start;
    acpi.pci_memory64_window_end = pci_.memory64_window().end;
    acpi.pci_routes = pci_.interrupt_routes();
    acpi.pvpanic_port = PvPanic::kPort;
    memory_.write(layout::kAcpiTables, build_acpi_tables(layout::kAcpiTables, acpi));

    uint32_t tsc_khz = 0;  // every vCPU of a VM runs its TSC at the same rate
    for (uint32_t i = 0; i < config_.cpus; ++i) {
        auto vcpu = std::make_unique<Vcpu>(Vcpu::create(kvm_, vm_, i));
        if (i == 0) {
            tsc_khz = vcpu->tsc_khz();
            if (tsc_khz) spdlog::info("guest TSC: {} kHz, told to the guest in CPUID leaf {:#x}", tsc_khz, kCpuidHypervisorTiming);
            else spdlog::warn("KVM_GET_TSC_KHZ gave no TSC frequency: the guest must calibrate its TSC itself");
        }
        vcpu->set_cpuid(make_vcpu_cpuid(supported, i, config_.cpus, tsc_khz));
        set_firmware_defaults(*vcpu, msrs);
        // Only the boot CPU starts at the kernel; the others wait for the
        // INIT/SIPI the kernel sends through the in-kernel LAPIC.
        if (i == 0) set_boot_registers(*vcpu, entry);
        vcpus_.push_back(std::move(vcpu));
    }
}

void Machine::set_up_gdb() {
    gdb_gate_ = std::make_unique<VcpuGate>(vcpus_.size(), config_.gdb_wait);
    std::vector<const Vcpu*> vcpus;
    for (const auto& vcpu : vcpus_) vcpus.push_back(vcpu.get());
    // Which KVM_GUESTDBG_* flags this KVM knows (0: it does not say).
    const int flags = kvm_.check_extension(KVM_CAP_SET_GUEST_DEBUG2);
    gdb_target_ = std::make_unique<gdb::KvmGdbTarget>(
        std::move(vcpus), memory_, *gdb_gate_, static_cast<uint32_t>(std::max(flags, 0)),
        [this] { stop_.request(to_int(ExitCode::Stopped), "killed by gdb"); });
    try {
        gdb_server_ = std::make_unique<gdb::GdbServer>(*config_.gdb, *gdb_target_, *gdb_gate_);
    } catch (const gdb::GdbServerError& error) {
        fail(ExitCode::BadDevice, "--gdb: {}", error.what());
    }
}

int Machine::run() {
    // Stop signals, SIGWINCH and SIGUSR1 (state dump) are read from a signalfd here; every thread
    // inherits the block (signal_block_), and vCPU threads unblock only the
    // kick signal.
    ::signal(SIGPIPE, SIG_IGN);
    VcpuRunner::install_kick_handler();
    sigset_t stop_signals = signal_block_.blocked();
    sigdelset(&stop_signals, VcpuRunner::kick_signal());
    UniqueFd signals(::signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signals) throw std::system_error(errno, std::generic_category(), "signalfd");

    ConsoleInputSink* sink = console_input_sink();
    std::optional<RawTerminal> terminal;
    if (sink != nullptr) terminal.emplace(STDIN_FILENO);
    {
        std::optional<ConsoleInput> input;
        if (sink != nullptr) {
            std::lock_guard lock(console_input_mutex_);
            // --exec: held until the init has the command's terminal open.
            input.emplace(STDIN_FILENO, *sink, stop_, terminal->active(), config_.exec && !terminal->active(),
                          config_.exec && !terminal_ready_);
            console_input_ = &*input;
        }
        for (auto& vcpu : vcpus_) runners_.push_back(std::make_unique<VcpuRunner>(*vcpu, io_bus_, mmio_bus_, stop_, process_start_));
        if (gdb_server_) {
            for (auto& runner : runners_) runner->attach_debugger(*gdb_gate_, *gdb_target_);
            gdb_gate_->set_kick([this](size_t index) { runners_[index]->kick(); });
        }
        for (auto& runner : runners_) runner->start();
        if (gdb_server_) {
            gdb_server_->start();
            if (config_.gdb_wait) {
                const std::string line = fmt::format(
                    "minikvm: waiting for gdb on {} (every vCPU held before its first instruction)\n",
                    gdb_server_->address().text());
                write_to_stderr(std::span(reinterpret_cast<const uint8_t*>(line.data()), line.size()));
            }
        }

        const auto deadline = config_.timeout ? std::optional(process_start_ + *config_.timeout) : std::nullopt;
        bool timed_out = false;
        std::vector<VcpuActivity> activity;
        while (!stop_.requested()) {
            check_for_panic();
            if (deadline && std::chrono::steady_clock::now() >= *deadline) {
                activity = sample_vcpus();
                timed_out = stop_.request(to_int(ExitCode::Timeout),
                                          fmt::format("--timeout {} ms ran out", config_.timeout->count()));
                break;
            }
            pollfd fds[2] = {{signals.get(), POLLIN, 0}, {stop_.event_fd(), POLLIN, 0}};
            int ready = ::poll(fds, 2, kHaltProbeIntervalMs);
            if (ready < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
            if (ready > 0 && (fds[0].revents & POLLIN)) {
                signalfd_siginfo info{};
                if (::read(signals.get(), &info, sizeof(info)) != sizeof(info)) continue;
                if (info.ssi_signo == SIGWINCH) terminal_resized();
                else if (info.ssi_signo == SIGUSR1) dump_device_state(terminal && terminal->active());
                else stop_.request(to_int(ExitCode::Stopped), fmt::format("stopped by signal {}", strsignal(info.ssi_signo)));
            }
            if (ready == 0) probe_for_halt();
        }
        if (gdb_gate_) gdb_gate_->shut_down();  // parked vCPUs see their stop request
        for (auto& runner : runners_) runner->request_stop();
        for (auto& runner : runners_) runner->join();
        // Output the guest queued on virtio-console but the event loop has
        // not taken yet: a panic's last lines, for the verdict.
        if (virtio_console_ != nullptr) virtio_console_->flush_output();
        if (timed_out) report_hang(activity);
        std::lock_guard lock(console_input_mutex_);
        console_input_ = nullptr;
    }  // the input thread stops here, before the terminal is restored
    std::vector<std::string> idle_devices = warn_about_idle_devices();
    log_device_summaries();
    log_kernel_report();
    const auto [status, reason] = verdict();
    // A gdb waiting on the running guest hears how it ended (W).
    if (gdb_server_) gdb_server_->finish(status);
    std::vector<std::string> hints = log_boot_hints(status);
    hints.insert(hints.end(), idle_devices.begin(), idle_devices.end());
    build_report(status, reason, std::move(hints));
    auto level = status == to_int(ExitCode::GuestPowerOff) ? spdlog::level::info
                 : status == to_int(ExitCode::GuestCrash) || status == to_int(ExitCode::GuestPanic) ||
                         status == to_int(ExitCode::KernelReport) || status == to_int(ExitCode::Timeout)
                     ? spdlog::level::err
                     : spdlog::level::warn;
    // The command's own status is its business, not a warning.
    if (exec_status() && status == *exec_status()) level = spdlog::level::info;
    spdlog::log(level, "{} (exit status {})", reason, status);
    return status;
}

void Machine::console_output(unsigned source, std::span<const uint8_t> bytes, bool to_terminal) {
    if (to_terminal) write_to_stdout(bytes);
    std::lock_guard lock(console_mutex_);
    if (!first_console_byte_ms_ && !bytes.empty()) first_console_byte_ms_ = ms_since_start();
    if (console_log_) {
        // A full disk or a closed file must not stop the guest: the copy just ends.
        if (::write(console_log_.get(), bytes.data(), bytes.size()) < 0) console_log_.reset();
    }
    const bool had_panic = watcher_.panic_line().has_value();
    watcher_.feed(source, bytes);
    if (!had_panic && watcher_.panic_line() && !panic_since_) panic_since_ = std::chrono::steady_clock::now();
    // The clock only once the guest panicked: not on every console write.
    if (panic_since_ && !bytes.empty()) panic_last_output_ = std::chrono::steady_clock::now();
}

void Machine::check_for_panic() {
    std::string line;
    {
        std::lock_guard lock(console_mutex_);
        if (!panic_since_) return;
        // The panic's own report ends with its end marker; wait for it (its
        // backtrace is what a developer needs, and pvpanic comes after it)
        // while the guest still prints it, however slowly (an emulated or
        // loaded host takes seconds), but not forever.
        constexpr auto kQuiet = std::chrono::seconds(1);
        constexpr auto kLongest = std::chrono::seconds(30);
        const auto now = std::chrono::steady_clock::now();
        const auto last_sign = std::max(*panic_since_, panic_last_output_.value_or(*panic_since_));
        const bool grace_over = now - last_sign >= kQuiet || now - *panic_since_ >= kLongest;
        if (!watcher_.panic_complete() && !grace_over) return;
        line = watcher_.panic_line().value_or("");
    }
    stop_.request(to_int(ExitCode::GuestPanic), line.empty() ? "guest kernel panicked (pvpanic)"
                                                              : fmt::format("guest kernel panicked: {}", line));
}

std::pair<int, std::string> Machine::verdict() const {
    const int status = stop_.exit_status();
    // The user's stop and the host's failures are not the guest's doing.
    if (status == to_int(ExitCode::Stopped) || status == to_int(ExitCode::HostError)) return {status, stop_.reason()};
    std::lock_guard lock(console_mutex_);
    // A panic, however the guest ended afterwards (panic=-1 reboots: not 10).
    if (watcher_.panic_line() || pvpanic_seen_) {
        const std::string how = pvpanic_seen_ && watcher_.panic_line() ? "pvpanic and console"
                                : pvpanic_seen_                        ? "pvpanic"
                                                                       : "console";
        std::string reason = fmt::format("guest kernel panicked ({})", how);
        if (watcher_.panic_line()) reason += ": " + *watcher_.panic_line();
        if (status != to_int(ExitCode::GuestPanic)) reason += fmt::format("; then: {}", stop_.reason());
        return {to_int(ExitCode::GuestPanic), reason};
    }
    if (const auto& report = watcher_.failure()) {
        return {to_int(ExitCode::KernelReport),
                fmt::format("guest kernel reported {} (--fail-on): {}; the run ended: {}",
                            kernel_report_name(report->kind), report->headline,
                            stop_.reason())};
    }
    return {status, stop_.reason()};
}

void Machine::log_kernel_report() const {
    std::lock_guard lock(console_mutex_);
    const auto& report = watcher_.failure();
    if (!report) return;
    std::string text = fmt::format("minikvm: the guest kernel's {} report ({} lines{}):\n", kernel_report_name(report->kind),
                                   report->lines.size(), report->complete ? "" : ", cut short");
    for (const std::string& line : report->lines) text += "minikvm: | " + line + "\n";
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, text.data(), text.size());
}

std::vector<Machine::VcpuActivity> Machine::sample_vcpus() {
    constexpr int kRounds = 10;
    constexpr auto kSpacing = std::chrono::milliseconds(20);
    constexpr auto kAnswerWait = std::chrono::milliseconds(200);
    std::vector<VcpuActivity> activity(runners_.size());
    for (int round = 0; round < kRounds; ++round) {
        for (auto& runner : runners_) runner->request_probe();
        const auto give_up = std::chrono::steady_clock::now() + kAnswerWait;
        for (size_t i = 0; i < runners_.size();) {
            if (runners_[i]->probe_result() != VcpuRunner::ProbeResult::Pending ||
                std::chrono::steady_clock::now() >= give_up) {
                ++i;
                continue;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        for (size_t i = 0; i < runners_.size(); ++i) {
            const auto kind = static_cast<size_t>(runners_[i]->probe_result());
            ++activity[i].count[kind];
            activity[i].rip[kind] = runners_[i]->probe_rip();
        }
        std::this_thread::sleep_for(kSpacing);
    }
    return activity;
}

void Machine::report_hang(const std::vector<VcpuActivity>& activity) {
    // Function names when the kernel is an ELF vmlinux with its symbol
    // table; read only now, so a run that never times out never pays.
    KernelSymbols symbols;
    if (std::optional<std::vector<uint8_t>> image = read_file(config_.kernel_path))
        symbols = KernelSymbols::from_elf(*image);
    std::string text = fmt::format("minikvm: --timeout: {} ms passed; the guest was{}:\n", config_.timeout->count(),
                                   activity.empty() ? "" : fmt::format(" (over {} probes of every vCPU)",
                                                                       activity.front().total()));
    for (size_t i = 0; i < activity.size(); ++i) {
        const VcpuActivity& seen = activity[i];
        // The state seen most often; a tie goes to the busier one.
        size_t most = 0;
        for (size_t kind = 0; kind < VcpuActivity::kKinds; ++kind)
            if (seen.count[kind] >= seen.count[most] && seen.count[kind] > 0) most = kind;
        const auto state = static_cast<VcpuRunner::ProbeResult>(most);
        text += fmt::format("minikvm:   vCPU {}: {}", i, probe_state_description(state));
        if (state != VcpuRunner::ProbeResult::NotStarted && state != VcpuRunner::ProbeResult::Pending) {
            const uint64_t rip = seen.rip[most];
            const std::optional<std::string> function = symbols.describe(rip);
            text += fmt::format(", RIP {:#x}{}", rip, function ? " (" + *function + ")" : "");
        }
        if (seen.count[most] != seen.total())
            text += fmt::format(" in {} of {} probes", seen.count[most], seen.total());
        text += "\n";
    }
    for (const VirtioSlot& slot : virtio_slots_) {
        if (!slot.transport->ever_reached_driver_ok())
            text += fmt::format("minikvm:   {}: never reached DRIVER_OK\n", slot.name);
        else if (const uint32_t in_flight = slot.transport->chains_in_flight(); in_flight > 0)
            text += fmt::format("minikvm:   {}: {} request(s) outstanding\n", slot.name, in_flight);
    }
    // Each device's full state (its rings' indices, the device's own
    // counters): what tells a lost kick from a lost interrupt.
    text += "minikvm:   device state:\n";
    for (const VirtioSlot& slot : virtio_slots_) {
        const std::string state = slot.transport->state_report();
        size_t start = 0;
        while (start < state.size()) {
            const size_t end = state.find('\n', start);
            text += "minikvm:   | " + state.substr(start, end - start) + "\n";
            if (end == std::string::npos) break;
            start = end + 1;
        }
    }
    std::lock_guard lock(console_mutex_);
    if (!watcher_.any_output()) {
        text += "minikvm:   the guest printed nothing on any console\n";
    } else {
        text += "minikvm:   last console lines:\n";
        for (const std::string& line : watcher_.last_lines()) text += "minikvm:   | " + line + "\n";
    }
    [[maybe_unused]] ssize_t n = ::write(STDERR_FILENO, text.data(), text.size());
}

void Machine::probe_for_halt() {
    // Judge the round that was requested one interval ago, then start the next.
    bool all_stopped = true;
    for (auto& runner : runners_) {
        VcpuRunner::ProbeResult result = runner->probe_result();
        if (result != VcpuRunner::ProbeResult::HaltedForGood && result != VcpuRunner::ProbeResult::NotStarted)
            all_stopped = false;
    }
    bool boot_cpu_halted = runners_.front()->probe_result() == VcpuRunner::ProbeResult::HaltedForGood;
    halted_probe_rounds_ = (all_stopped && boot_cpu_halted) ? halted_probe_rounds_ + 1 : 0;
    if (halted_probe_rounds_ >= kHaltProbeRoundsForPowerOff) {
        stop_.request(to_int(ExitCode::GuestPowerOff), "guest halted every vCPU with interrupts off (power-off)");
        return;
    }
    for (auto& runner : runners_) runner->request_probe();
}

}  // namespace minikvm
