// The floor for exit-cost benchmarks: the smallest VMM that can run the
// bare-metal test guest. One vCPU on the calling thread, KVM_RUN in a loop,
// and a switch on the exit -- no buses, no locks, no device models, no
// threads. Whatever minikvm costs on top of this is minikvm's own overhead.
//
//   bare_exit_loop GUEST.elf "test=bench-pio ..."
//
// It answers just enough for the guest's benchmark modes: COM1 output goes to
// stdout (the line status register always says "transmitter empty"), the
// debug-exit port ends the run with (V << 1) | 1 like minikvm, every other
// port read gives all-ones and every write and MMIO access is dropped. The
// guest, memory layout and boot state come from minikvm's own loader, so
// both VMMs start the same guest in the same state.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <cerrno>
#include <exception>
#include <optional>
#include <string>

#include "boot/cpuid.h"
#include "boot/linux_loader.h"
#include "boot/x86_boot_state.h"
#include "vmm/core/guest_memory.h"
#include "vmm/core/kvm.h"
#include "vmm/core/kvm_uapi.h"
#include "vmm/core/vcpu.h"
#include "vmm/core/vm.h"

namespace {

using namespace minikvm;

constexpr uint16_t kCom1Data = 0x3f8;
constexpr uint16_t kCom1LineStatus = 0x3fd;
constexpr uint16_t kDebugExit = 0xf4;
constexpr uint8_t kTransmitterEmpty = 0x60;

// Handles one port-I/O exit; returns an exit status when the guest is done.
std::optional<int> port_io(kvm_run& run) {
    auto* data = reinterpret_cast<uint8_t*>(&run) + run.io.data_offset;
    const size_t bytes = size_t{run.io.size} * run.io.count;
    if (run.io.direction == KVM_EXIT_IO_OUT) {
        if (run.io.port == kCom1Data) {
            [[maybe_unused]] ssize_t n = ::write(STDOUT_FILENO, data, bytes);
        } else if (run.io.port == kDebugExit) {
            return (data[0] << 1) | 1;
        }
        return std::nullopt;
    }
    std::memset(data, 0xff, bytes);
    if (run.io.port == kCom1LineStatus) data[0] = kTransmitterEmpty;
    return std::nullopt;
}

int run_guest(const std::string& guest, const std::string& command_line) {
    Kvm kvm = Kvm::open();
    Vm vm = Vm::create(kvm);
    GuestMemory memory = GuestMemory::allocate(128ULL << 20);
    vm.map_memory(memory);
    const LinuxBootInfo boot = load_linux(memory, {guest, std::nullopt, command_line, 0});
    write_boot_tables(memory);

    Vcpu vcpu = Vcpu::create(kvm, vm, 0);
    vcpu.set_cpuid(make_vcpu_cpuid(kvm.supported_cpuid(), 0, 1, vcpu.tsc_khz()));
    set_firmware_defaults(vcpu, kvm.msr_index_list());
    set_boot_registers(vcpu, boot.entry);

    kvm_run& run = vcpu.run_state();
    for (;;) {
        const int result = vcpu.run();
        if (result == -EINTR) continue;
        if (result != 0) {
            std::fprintf(stderr, "bare_exit_loop: KVM_RUN failed: %s\n", std::strerror(-result));
            return 14;
        }
        switch (run.exit_reason) {
            case KVM_EXIT_IO:
                if (auto status = port_io(run)) return *status;
                break;
            case KVM_EXIT_MMIO:
                if (!run.mmio.is_write) std::memset(run.mmio.data, 0xff, run.mmio.len);
                break;
            case KVM_EXIT_HLT:
                return 0;
            default:
                std::fprintf(stderr, "bare_exit_loop: unexpected exit reason %u\n", run.exit_reason);
                return 12;
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: bare_exit_loop GUEST.elf COMMAND_LINE\n");
        return 2;
    }
    try {
        return run_guest(argv[1], argv[2]);
    } catch (const std::exception& error) {
        std::fprintf(stderr, "bare_exit_loop: %s\n", error.what());
        return 14;
    }
}
