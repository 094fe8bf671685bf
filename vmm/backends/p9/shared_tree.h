#pragma once
// A host directory the guest may use, and the only way the 9P server
// reaches host files: every path is resolved beneath the share's root by
// the kernel (openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_MAGICLINKS), so no symbolic link -- absolute, relative, to
// "..", swapped in between two requests -- and no /proc magic link is ever
// followed, and no path leaves the root. Paths are relative to the root,
// "" being the root itself; names are single components.
//
// Symbolic links inside the share are still files the guest can create,
// stat and read (readlink): the guest's own kernel follows them, within
// the guest's view, never the server.

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "vmm/backends/p9/p9_wire.h"
#include "vmm/core/unique_fd.h"

namespace minikvm::p9 {

class SharedTree {
public:
    // Opens `root` (a directory). Throws VmmError (exit 6) with one line when
    // it is not a directory, cannot be opened, or the kernel has no openat2
    // (Linux 5.6).
    static std::unique_ptr<SharedTree> open(const std::string& root);

    const std::string& root_path() const { return root_path_; }
    int root_fd() const { return root_.get(); }

    // Opens `path` (relative; "" for the root) beneath the root without
    // following any symbolic link: with O_PATH | O_NOFOLLOW a final
    // symbolic link is opened itself. Returns the fd or -errno.
    int open_beneath(const std::string& path, int flags, mode_t mode = 0) const;
    // The directory `path` names, as an O_PATH fd, or -errno (-ENOTDIR...).
    int open_directory(const std::string& path) const;
    // Reopens what `path_fd` (an O_PATH fd from open_beneath) refers to with
    // real access `flags`, through /proc/self/fd: the same inode, never a
    // new lookup. Returns the fd or -errno.
    static int reopen(int path_fd, int flags);

    // A qid for `st`. Files of different host filesystems (a share of "/"
    // spans several) get different qid paths: the device is folded into
    // the top 16 bits.
    Qid qid_for(const struct stat& st);

    // Whether `name` may be one path component the guest creates or looks
    // up: not empty, not "." or "..", no '/' or NUL, at most 255 bytes.
    static bool valid_name(std::string_view name);
    // `parent` + "/" + `name`, or `name` for the root.
    static std::string join(const std::string& parent, std::string_view name);
    // The parent of a non-root path, and its last component.
    static std::string parent_of(const std::string& path);
    static std::string base_of(const std::string& path);

private:
    SharedTree(std::string root_path, UniqueFd root) : root_path_(std::move(root_path)), root_(std::move(root)) {}

    std::string root_path_;
    UniqueFd root_;
    std::mutex devices_mutex_;
    std::unordered_map<uint64_t, uint16_t> device_numbers_;  // host st_dev -> qid prefix
};

}  // namespace minikvm::p9
