#include "vmm/machine.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <system_error>

#include "boot/acpi_tables.h"
#include "boot/cpuid.h"
#include "boot/linux_loader.h"
#include "boot/memory_layout.h"
#include "boot/mp_table.h"
#include "boot/x86_boot_state.h"
#include "vmm/console_input.h"
#include "vmm/error.h"
#include "vmm/exit_codes.h"
#include "vmm/terminal.h"

namespace minikvm {

namespace {

constexpr int kHaltProbeIntervalMs = 100;
// Two rounds in a row, so a vCPU caught between `cli` and a wake-up never
// counts as powered off.
constexpr int kHaltProbeRoundsForPowerOff = 2;

// The guest's console bytes go to stdout as they come; a closed stdout just
// discards them (the VM keeps running).
void write_to_terminal(std::span<const uint8_t> bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::write(STDOUT_FILENO, bytes.data(), bytes.size());
        if (n > 0) {
            bytes = bytes.subspan(static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) {
            pollfd out{STDOUT_FILENO, POLLOUT, 0};
            ::poll(&out, 1, 100);
            continue;
        }
        return;
    }
}

// The host terminal's size, when stdout is one.
std::optional<VirtioConsole::TerminalSize> terminal_size() {
    winsize size{};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) != 0 || size.ws_col == 0 || size.ws_row == 0) return std::nullopt;
    return VirtioConsole::TerminalSize{size.ws_col, size.ws_row};
}

std::vector<DiskImage> open_disk_images(const std::vector<DiskConfig>& disks) {
    std::vector<DiskImage> images;
    images.reserve(disks.size());
    for (const DiskConfig& disk : disks) images.push_back(DiskImage::open(disk));
    return images;
}

std::vector<std::unique_ptr<TapDevice>> open_taps(const std::vector<NetConfig>& nets) {
    std::vector<std::unique_ptr<TapDevice>> taps;
    taps.reserve(nets.size());
    for (const NetConfig& net : nets) taps.push_back(std::make_unique<TapDevice>(TapDevice::open(net.tap)));
    return taps;
}

uint32_t cpuid_value(const std::vector<kvm_cpuid_entry2>& entries, uint32_t function, uint32_t kvm_cpuid_entry2::*reg) {
    for (const auto& entry : entries)
        if (entry.function == function) return entry.*reg;
    return 0;
}

}  // namespace

Machine::Machine(const MachineConfig& config, std::chrono::steady_clock::time_point process_start)
    : signal_block_({SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGUSR1, VcpuRunner::kick_signal()}),
      config_(config),
      process_start_(process_start),
      disk_images_(open_disk_images(config.disks)),
      taps_(open_taps(config.nets)),
      kvm_(Kvm::open()),
      vm_(Vm::create(kvm_)),
      memory_(GuestMemory::allocate(config.memory_bytes)),
      com1_irq_(vm_, Serial8250::kCom1Irq),
      serial_(com1_irq_,
              [mode = config.console](uint8_t byte) {
                  if (mode != ConsoleMode::None) write_to_terminal(std::span<const uint8_t>(&byte, 1));
              }),
      i8042_([this] { stop_.request(to_int(ExitCode::GuestReboot), "guest reset through the i8042 controller"); }),
      acpi_pm_([this] { stop_.request(to_int(ExitCode::GuestPowerOff), "guest powered off (ACPI S5)"); }),
      debug_exit_([this](uint8_t value) {
          stop_.request(debug_exit_status(value), fmt::format("guest wrote {:#04x} to the debug-exit port", value));
      }),
      pci_(io_bus_, mmio_bus_, [this](uint32_t gsi) { return std::make_unique<KvmIrqLine>(vm_, gsi); }) {
    int max_cpus = std::min(kvm_.recommended_vcpus(), 254);
    if (config.cpus < 1 || config.cpus > static_cast<uint32_t>(max_cpus))
        fail(ExitCode::Usage, "--cpus {}: this host's KVM supports 1 to {} vCPUs", config.cpus, max_cpus);

    vm_.map_memory(memory_);
    LinuxBootInfo boot =
        load_linux(memory_, {config.kernel_path, config.initrd_path, config.command_line, layout::kAcpiTables});
    spdlog::info("loaded {} '{}', entry {:#x}{}", to_string(boot.format), config.kernel_path, boot.entry,
                 boot.initrd_size ? fmt::format(", initrd {} KiB at {:#x}", boot.initrd_size >> 10, boot.initrd_address)
                                  : std::string());
    write_boot_tables(memory_);
    add_devices();
    set_up_vcpus(boot.entry);
}

Machine::~Machine() = default;

void Machine::add_devices() {
    io_bus_.add(Serial8250::kCom1Port, Serial8250::kRegisterCount, serial_);
    io_bus_.add(I8042::kBasePort, I8042::kPortCount, i8042_);
    io_bus_.add(DebugExit::kPort, 1, debug_exit_);
    io_bus_.add(CmosRtc::kBasePort, CmosRtc::kPortCount, rtc_);
    io_bus_.add(AcpiPm::kBasePort, AcpiPm::kPortCount, acpi_pm_);
    pci_.set_trace(config_.trace.pci);
    io_bus_.add(PciHostBridge::kBasePort, PciHostBridge::kPortCount, pci_);
    // POST code, DMA page registers and the delay port Linux's io_delay uses.
    io_bus_.add(0x80, 0x10, quiet_ports_);
    io_bus_.add(0xed, 1, quiet_ports_);
    if (config_.console == ConsoleMode::Virtio) add_virtio_console();
    add_virtio_disks();
    add_virtio_nets();
}

void Machine::add_virtio_console() {
    virtio_console_ = std::make_unique<VirtioConsole>("virtio-console0", write_to_terminal, terminal_size());
    virtio_console_pci_ =
        std::make_unique<VirtioPciLegacy>(*virtio_console_, memory_, "virtio-console0", &notify_eventfds_);
    virtio_console_pci_->set_trace(config_.trace.virtio);
    PciBdf address = pci_.register_device(*virtio_console_pci_);
    spdlog::debug("virtio-console0 at PCI 00:{:02x}.0", address.device);
    virtio_transports_.push_back(virtio_console_pci_.get());
}

void Machine::dump_device_state(bool terminal_raw) const {
    std::string report = fmt::format("minikvm: state dump (SIGUSR1): {} virtio device(s)\n", virtio_transports_.size());
    for (const VirtioPciLegacy* transport : virtio_transports_) report += transport->state_report();
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

void Machine::warn_about_idle_devices() const {
    for (const VirtioPciLegacy* transport : virtio_transports_)
        if (auto warning = transport->never_driver_ok_warning()) spdlog::warn("{}", *warning);
}

void Machine::add_virtio_disks() {
    for (size_t i = 0; i < disk_images_.size(); ++i) {
        const std::string name = fmt::format("virtio-blk{}", i);
        disks_.push_back(std::make_unique<VirtioBlk>(name, std::move(disk_images_[i]), config_.disks[i], event_loop_));
        disk_transports_.push_back(std::make_unique<VirtioPciLegacy>(*disks_.back(), memory_, name, &notify_eventfds_));
        disk_transports_.back()->set_trace(config_.trace.virtio);
        PciBdf address = pci_.register_device(*disk_transports_.back());
        spdlog::debug("{} at PCI 00:{:02x}.0", name, address.device);
        virtio_transports_.push_back(disk_transports_.back().get());
    }
    disk_images_.clear();  // all moved into their devices
}

void Machine::add_virtio_nets() {
    for (size_t i = 0; i < taps_.size(); ++i) {
        const std::string name = fmt::format("virtio-net{}", i);
        // Chosen once: the guest sees the same address across its reboots.
        const MacAddress mac = config_.nets[i].mac.value_or(MacAddress::random_local());
        spdlog::info("{}: tap {} ({}), mac {}", name, taps_[i]->name(), taps_[i]->created() ? "created" : "attached",
                     mac.to_string());
        nets_.push_back(std::make_unique<VirtioNet>(name, std::move(taps_[i]), mac, event_loop_));
        net_transports_.push_back(std::make_unique<VirtioPciLegacy>(*nets_.back(), memory_, name, &notify_eventfds_));
        net_transports_.back()->set_trace(config_.trace.virtio);
        PciBdf address = pci_.register_device(*net_transports_.back());
        spdlog::debug("{} at PCI 00:{:02x}.0", name, address.device);
        virtio_transports_.push_back(net_transports_.back().get());
    }
    taps_.clear();  // all moved into their devices
}

void Machine::log_net_counters() const {
    for (size_t i = 0; i < nets_.size(); ++i)
        spdlog::info("virtio-net{} (tap {}): {}", i, nets_[i]->backend().name(), nets_[i]->counters_text());
}

ConsoleInputSink* Machine::console_input_sink() {
    switch (config_.console) {
        case ConsoleMode::Serial: return &serial_;
        case ConsoleMode::Virtio: return virtio_console_.get();
        case ConsoleMode::None: return nullptr;
    }
    return nullptr;
}

void Machine::terminal_resized() {
    if (!virtio_console_) return;
    if (auto size = terminal_size()) virtio_console_->set_size(*size);
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
    acpi.pci_routes = pci_.interrupt_routes();
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
        if (sink != nullptr) input.emplace(STDIN_FILENO, *sink, stop_, terminal->active());
        for (auto& vcpu : vcpus_) runners_.push_back(std::make_unique<VcpuRunner>(*vcpu, io_bus_, mmio_bus_, stop_, process_start_));
        for (auto& runner : runners_) runner->start();

        while (!stop_.requested()) {
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
        for (auto& runner : runners_) runner->request_stop();
        for (auto& runner : runners_) runner->join();
    }  // the input thread stops here, before the terminal is restored
    warn_about_idle_devices();
    log_net_counters();
    int status = stop_.exit_status();
    auto level = status == to_int(ExitCode::GuestPowerOff) ? spdlog::level::info
                 : status == to_int(ExitCode::GuestCrash)  ? spdlog::level::err
                                                            : spdlog::level::warn;
    spdlog::log(level, "{} (exit status {})", stop_.reason(), status);
    return status;
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
