#pragma once
// Process exit codes, documented in README.md ("Exit codes").
// minikvm's own codes are even so they never collide with the debug-exit
// port, whose codes are always odd: (value << 1) | 1.

namespace minikvm {

enum class ExitCode : int {
    GuestPowerOff = 0,   // guest powered off (or halted every vCPU for good)
    Usage = 2,           // bad command line
    BadImage = 4,        // kernel or initrd missing, unreadable or unusable
    BadDevice = 6,       // a device backend cannot be set up (a --disk image, a --net tap)
    KvmUnavailable = 8,  // /dev/kvm missing, no permission, or a capability missing
    GuestReboot = 10,    // guest asked for a reset (i8042 0xFE, reboot)
    GuestCrash = 12,     // triple fault, KVM internal error, failed VM entry
    HostError = 14,      // the host failed us (out of memory, KVM ioctl error)
    Stopped = 16,        // SIGINT/SIGTERM or the console escape (Ctrl-A x)
    GuestPanic = 18,     // the guest kernel panicked (pvpanic or its panic line on a console)
    Timeout = 20,        // --timeout expired
    KernelReport = 22,   // a --fail-on report (oops, WARN, KASAN...) appeared on a console
};

constexpr int to_int(ExitCode code) { return static_cast<int>(code); }

// Guest-chosen exit through the debug-exit port.
constexpr int debug_exit_status(unsigned value) { return static_cast<int>(((value << 1) | 1U) & 0xffU); }

}  // namespace minikvm
