#include "vmm/backends/p9/shared_tree.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "vmm/core/error.h"

namespace minikvm::p9 {

namespace {

constexpr uint8_t kQidDirectory = 0x80;
constexpr uint8_t kQidSymlink = 0x02;

int openat2_beneath(int dirfd, const char* path, int flags, mode_t mode) {
    struct open_how how {};
    how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
    // The kernel refuses a mode without O_CREAT/O_TMPFILE.
    how.mode = (flags & (O_CREAT | O_TMPFILE)) != 0 ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    for (;;) {
        const long fd = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd >= 0) return static_cast<int>(fd);
        // EAGAIN: a rename raced the lookup; the kernel asks to retry.
        if (errno != EINTR && errno != EAGAIN) return -errno;
    }
}

}  // namespace

std::unique_ptr<SharedTree> SharedTree::open(const std::string& root) {
    const int fd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail(ExitCode::BadDevice, "--share {}: {}", root, std::strerror(errno));
    UniqueFd root_fd(fd);
    // Probe openat2 once, so a kernel without it is refused up front rather
    // than failing every request.
    const int probe = openat2_beneath(root_fd.get(), ".", O_PATH, 0);
    if (probe == -ENOSYS)
        fail(ExitCode::BadDevice, "--share {}: this kernel has no openat2 (Linux 5.6 or newer is needed)", root);
    if (probe < 0) fail(ExitCode::BadDevice, "--share {}: {}", root, std::strerror(-probe));
    ::close(probe);
    return std::unique_ptr<SharedTree>(new SharedTree(root, std::move(root_fd)));
}

int SharedTree::open_beneath(const std::string& path, int flags, mode_t mode) const {
    return openat2_beneath(root_.get(), path.empty() ? "." : path.c_str(), flags, mode);
}

int SharedTree::open_directory(const std::string& path) const {
    return open_beneath(path, O_PATH | O_DIRECTORY);
}

int SharedTree::reopen(int path_fd, int flags) {
    char proc_path[64];
    std::snprintf(proc_path, sizeof proc_path, "/proc/self/fd/%d", path_fd);
    // No O_NOFOLLOW: the magic link is the point; it names the very inode.
    const int fd = ::open(proc_path, (flags & ~O_NOFOLLOW & ~O_CREAT) | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

Qid SharedTree::qid_for(const struct stat& st) {
    uint16_t device = 0;
    {
        std::lock_guard lock(devices_mutex_);
        auto [it, added] = device_numbers_.try_emplace(st.st_dev, static_cast<uint16_t>(device_numbers_.size()));
        device = it->second;
    }
    Qid qid;
    if (S_ISDIR(st.st_mode)) qid.type = kQidDirectory;
    else if (S_ISLNK(st.st_mode)) qid.type = kQidSymlink;
    qid.version = 0;
    qid.path = (uint64_t{device} << 48) ^ static_cast<uint64_t>(st.st_ino);
    return qid;
}

bool SharedTree::valid_name(std::string_view name) {
    if (name.empty() || name.size() > 255 || name == "." || name == "..") return false;
    return name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

std::string SharedTree::join(const std::string& parent, std::string_view name) {
    if (parent.empty()) return std::string(name);
    std::string path = parent;
    path += '/';
    path += name;
    return path;
}

std::string SharedTree::parent_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

std::string SharedTree::base_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace minikvm::p9
