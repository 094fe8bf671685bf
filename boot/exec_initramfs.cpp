#include "boot/exec_initramfs.h"

#include <stdexcept>
#include <string>

#include "boot/cpio_newc.h"
#include "vmm/core/error.h"

namespace minikvm {

namespace {

// (uid_t)-1 means "unchanged" to setuid(2) and friends, so the init refuses it.
constexpr uint32_t kNoId = UINT32_MAX;

void check_no_nul(std::string_view what, std::string_view value) {
    if (value.find('\0') != std::string_view::npos)
        fail(ExitCode::Usage, "--exec: the {} contains a NUL byte, which cannot be passed to the guest", what);
}

void check_absolute(std::string_view what, std::string_view path) {
    check_no_nul(what, path);
    if (path.empty() || path[0] != '/') fail(ExitCode::Usage, "--exec: the {} '{}' is not an absolute path", what, path);
}

void check_id(std::string_view what, uint32_t id) {
    if (id == kNoId) fail(ExitCode::Usage, "--exec: {} {} is not a valid id", what, id);
}

// Appends one `KEY=VALUE\0` record.
void put(std::vector<uint8_t>& out, std::string_view key, std::string_view value) {
    if (key.empty() || key.find_first_of(std::string_view("=\0", 2)) != std::string_view::npos)
        fail(ExitCode::Usage, "--exec: config key '{}' is empty or holds '=' or a NUL byte", key);
    check_no_nul(key, value);
    out.insert(out.end(), key.begin(), key.end());
    out.push_back('=');
    out.insert(out.end(), value.begin(), value.end());
    out.push_back('\0');
}

std::string joined_groups(const std::vector<uint32_t>& groups) {
    std::string text;
    for (uint32_t group : groups) {
        check_id("group", group);
        if (!text.empty()) text += ',';
        text += std::to_string(group);
    }
    return text;
}

void put_env(std::vector<uint8_t>& out, std::string_view entry) {
    check_no_nul("environment entry", entry);
    const size_t equals = entry.find('=');
    if (equals == std::string_view::npos || equals == 0)
        fail(ExitCode::Usage, "--exec: environment entry '{}' is not NAME=value", entry);
    put(out, "env", entry);
}

void put_share(std::vector<uint8_t>& out, const ExecSpec::Share& share) {
    check_no_nul("share tag", share.tag);
    // The init splits TAG:WRITABLE:PATH at the first two ':'.
    if (share.tag.empty() || share.tag.find(':') != std::string::npos)
        fail(ExitCode::Usage, "--exec: share tag '{}' is empty or contains ':'", share.tag);
    check_absolute("share path", share.path);
    put(out, "share", share.tag + (share.writable ? ":1:" : ":0:") + share.path);
}

}  // namespace

std::vector<uint8_t> serialize_exec_spec(const ExecSpec& spec) {
    std::vector<uint8_t> out;
    check_no_nul("command", spec.command);
    put(out, "cmd", spec.command);
    if (!spec.cwd.empty()) {
        check_absolute("working directory", spec.cwd);
        put(out, "cwd", spec.cwd);
    }
    check_id("uid", spec.uid);
    check_id("gid", spec.gid);
    put(out, "uid", std::to_string(spec.uid));
    put(out, "gid", std::to_string(spec.gid));
    put(out, "groups", joined_groups(spec.groups));
    for (const std::string& entry : spec.env) put_env(out, entry);
    put(out, "rows", std::to_string(spec.rows));
    put(out, "cols", std::to_string(spec.cols));
    put(out, "stdin_terminal", spec.stdin_terminal ? "1" : "0");
    check_absolute("console device", spec.tty);
    put(out, "tty", spec.tty);
    if (!spec.stderr_tty.empty()) {
        check_absolute("stderr device", spec.stderr_tty);
        put(out, "stderr_tty", spec.stderr_tty);
    }
    check_no_nul("root tag", spec.root_tag);
    if (spec.root_tag.empty()) fail(ExitCode::Usage, "--exec: the root tag is empty");
    put(out, "root_tag", spec.root_tag);
    put(out, "root_writable", spec.root_writable ? "1" : "0");
    for (const ExecSpec::Share& share : spec.shares) put_share(out, share);
    return out;
}

std::vector<uint8_t> build_exec_initramfs(const ExecSpec& spec, std::span<const uint8_t> init_binary) {
    if (init_binary.empty()) throw std::invalid_argument("exec initramfs: the init binary is empty");
    const std::vector<uint8_t> config = serialize_exec_spec(spec);
    CpioNewcWriter cpio;
    for (std::string_view dir : {"dev", "proc", "sys", "mnt", "minikvm"}) cpio.add_directory(dir, 0755);
    cpio.add_char_device("dev/console", 0600, 5, 1);
    cpio.add_file(kExecInitName, 0755, init_binary);
    cpio.add_file(kExecConfigName, 0644, config);
    return cpio.finish();
}

}  // namespace minikvm
