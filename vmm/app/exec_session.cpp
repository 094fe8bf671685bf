#include "vmm/app/exec_session.h"

#include <grp.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "vmm/app/terminal.h"
#include "vmm/core/error.h"

namespace minikvm {

const std::vector<std::string>& exec_environment_names() {
    // What a command expects to find (its PATH, who and where it is, how to
    // talk to the terminal, its locale); nothing host-specific like
    // DISPLAY, SSH_AUTH_SOCK or XDG_RUNTIME_DIR that points at sockets the
    // guest cannot reach.
    static const std::vector<std::string> names{"PATH", "HOME",     "USER",     "LOGNAME",  "SHELL",
                                                "TERM", "LANG",     "LANGUAGE", "LC_ALL",   "LC_CTYPE",
                                                "TZ",   "COLORTERM", "NO_COLOR", "CI"};
    return names;
}

ExecSpec caller_exec_spec(const MachineConfig& config) {
    ExecSpec spec;
    spec.command = config.exec->command;
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof cwd) == nullptr)
        fail(ExitCode::Usage, "--exec: cannot find the current directory: {}", std::strerror(errno));
    spec.cwd = cwd;
    spec.uid = ::getuid();
    spec.gid = ::getgid();
    const int count = ::getgroups(0, nullptr);
    if (count > 0) {
        std::vector<gid_t> groups(static_cast<size_t>(count));
        const int got = ::getgroups(count, groups.data());
        for (int i = 0; i < got; ++i) spec.groups.push_back(groups[static_cast<size_t>(i)]);
    }
    for (const std::string& name : exec_environment_names())
        if (const char* value = std::getenv(name.c_str())) spec.env.push_back(name + "=" + value);
    if (std::getenv("PATH") == nullptr) spec.env.push_back("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
    spec.stdin_terminal = ::isatty(STDIN_FILENO) != 0;
    if (auto size = stdout_terminal_size()) {
        spec.rows = size->rows;
        spec.cols = size->columns;
    }
    spec.tty = "/dev/hvc0";
    spec.stderr_tty = "/dev/hvc1";  // the second virtio console (virtio_registry)
    spec.root_tag = kExecRootTag;
    spec.root_writable = false;
    for (const ShareConfig& share : config.shares) {
        if (share.tag == kExecRootTag) continue;
        std::error_code error;
        std::filesystem::path absolute = std::filesystem::absolute(share.path, error);
        if (error) fail(ExitCode::Usage, "--share {}: {}", share.path, error.message());
        std::string path = absolute.lexically_normal().string();
        while (path.size() > 1 && path.back() == '/') path.pop_back();
        if (path == "/") continue;  // the root is there already, read-only under the overlay
        spec.shares.push_back({share.tag, path, !share.read_only});
    }
    return spec;
}

}  // namespace minikvm
