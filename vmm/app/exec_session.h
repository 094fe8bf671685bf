#pragma once
// The caller's side of `minikvm --exec CMD`: what the guest's init is told
// (boot/exec_initramfs.h) about the person running minikvm -- their
// working directory, ids, environment essentials and terminal -- and how the
// command's status and minikvm's own failures become one exit status.
//
// Exit statuses with --exec (README "Run a command"): the command's own
// status (128 + N when signal N killed it), and, as docker run does,
//   125  the command never got to run or never reported: a bad minikvm
//        option, a device or kernel problem, a guest that panicked, timed
//        out or powered off first, an init that could not mount the host's
//        files (no 9p in the kernel);
//   126  the command was found but could not be executed;
//   127  the command was not found.
// Every 125 comes with one line on stderr saying why.

#include <string>
#include <vector>

#include "boot/exec_initramfs.h"
#include "vmm/app/machine_config.h"

namespace minikvm {

inline constexpr int kExecFailedStatus = 125;
// The 9P tag the host's root is served under.
inline constexpr const char* kExecRootTag = "minikvm-root";

// The spec for `config` (exec set), from this process's cwd, ids, groups,
// environment and terminal. Shares (besides the root) are mounted at their
// host paths, made absolute. Throws VmmError (ExitCode::Usage) when the
// working directory cannot be found.
ExecSpec caller_exec_spec(const MachineConfig& config);

// The environment variables passed into the guest, when set here.
const std::vector<std::string>& exec_environment_names();

}  // namespace minikvm
