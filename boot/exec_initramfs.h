#pragma once
// The initramfs of `minikvm --exec CMD`: the static init (boot/exec_init/,
// embedded by exec_init_image.h) and its config file, which says what to run
// and how. The init mounts the host's root over virtio-9p, runs the command
// and reports its exit status on port 0xf5 (devices/exec_status.h).

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace minikvm {

struct ExecSpec {
    std::string command;  // for /bin/sh -c
    std::string cwd;      // absolute; empty: the init's default, /
    uint32_t uid = 0, gid = 0;
    std::vector<uint32_t> groups;  // supplementary groups
    std::vector<std::string> env;  // NAME=value each: the command's whole environment
    uint16_t rows = 0, cols = 0;   // terminal size, 0 = unknown
    bool stdin_terminal = false;   // minikvm's stdin is a terminal: keep the guest's tty cooked
    std::string tty = "/dev/hvc0";
    std::string stderr_tty;  // the command's stderr, when not the tty (--exec: /dev/hvc1)
    std::string root_tag = "root";  // the virtio-9p tag of the host's root
    bool root_writable = false;     // mount it read-write instead of under a tmpfs overlay
    struct Share {
        std::string tag;
        std::string path;  // absolute, inside the guest
        bool writable = false;
    };
    std::vector<Share> shares;
};

// Where the init and its config live in the initramfs.
inline constexpr std::string_view kExecInitName = "init";
inline constexpr std::string_view kExecConfigName = "minikvm/exec";

// The config file: records `KEY=VALUE\0` (the format and its keys:
// boot/exec_init/exec_config.h). Throws VmmError (ExitCode::Usage) for what
// the file cannot carry or the init would refuse: a NUL byte in any value,
// a relative cwd, tty or share path, an empty root tag or share tag, a ':'
// in a share tag, an env entry that is not NAME=value, an id of 4294967295.
std::vector<uint8_t> serialize_exec_spec(const ExecSpec& spec);

// The uncompressed newc archive: directories dev, proc, sys, mnt, minikvm;
// dev/console (character device 5,1, so the kernel can open the init's
// stdin/out/err before anything is mounted); init (0755) holding
// `init_binary`; minikvm/exec (0644); the trailer.
std::vector<uint8_t> build_exec_initramfs(const ExecSpec& spec, std::span<const uint8_t> init_binary);

}  // namespace minikvm
