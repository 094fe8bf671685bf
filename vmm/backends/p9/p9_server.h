#pragma once
// A 9P2000.L file server over one SharedTree: takes a request message,
// returns the reply message. No transport here (virtio/virtio_9p carries the
// bytes) and no state besides the session: the negotiated msize and the fid
// table.
//
// Rules the guest can break, and the answer (Rlerror with the errno):
//   - a message decode_request() rejects: EINVAL (EOPNOTSUPP for a type this
//     server does not serve); a message too short to have a tag: no reply;
//   - an unknown fid: EBADF; a new fid (attach, walk, xattrwalk) already in
//     use: EEXIST; more than kMaxFids fids: ENFILE; a walk of an open fid
//     onto itself (newfid == fid after Tlopen or Tlcreate): EBUSY;
//   - a name with '/' or NUL, "." or "..", empty or longer than 255 bytes,
//     where a new name is made: EINVAL; ".." in a walk goes up, never above
//     the root;
//   - a path through a symbolic link or out of the root (a link swapped in
//     meanwhile included): ELOOP or EXDEV from the kernel, never followed;
//   - opening a device node, FIFO or socket, or making a FIFO or socket,
//     unless the share allows devices: EPERM; making a device node: EPERM
//     always (it could name any host device, the host's disk included);
//   - anything that changes the tree on a read-only share: EROFS;
//   - a count larger than msize allows: cut to what fits (Tread, Treaddir);
//     a reply larger than the guest's buffers: ENOBUFS.
// Files are created with the credentials of the process, the guest's gid
// ignored; set-user-ID and set-group-ID bits are dropped from the modes of
// files the guest creates or chmods, so a guest cannot plant a setuid
// program on the host. chown is tried and its EPERM ignored (QEMU's
// security_model=none), so `cp -a` in the guest works as an unprivileged
// host user.
//
// Threads: handle() may run on several threads at once (the device's worker
// pool); requests on different fids proceed in parallel, requests on one
// fid are serialized by that fid, but for reads, which run side by side.

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "vmm/backends/p9/p9_messages.h"
#include "vmm/backends/p9/shared_tree.h"
#include "vmm/core/rate_limited_log.h"

namespace minikvm::p9 {

// The guest's own buffers for the data of Tread and Twrite: host views of
// guest RAM that the device translated through GuestMemory (bounds-checked),
// so file data moves between the host file and the guest in one preadv or
// pwritev, never through a copy. The server may shorten or advance these
// iovecs while it uses them.
struct DataBuffers {
    // Where an Rread's data goes: the guest's reply room after the Rread's
    // 11-byte head (kReadHeader), at least reply_limit - 11 bytes.
    std::span<iovec> read_into = {};
    // A Twrite's data left in the guest's buffers: the message handed over
    // ends at count (kWriteFields bytes; decode_request's external_data).
    std::span<iovec> write_from = {};
};

struct ServerOptions {
    bool read_only = false;
    bool allow_devices = false;  // open device nodes, FIFOs and sockets; make FIFOs and sockets
};

class Server {
public:
    static constexpr uint32_t kMaxMsize = 1u << 20;  // what Tversion may get
    static constexpr size_t kMaxFids = 1u << 18;
    static constexpr size_t kMaxXattrSize = 64u << 10;  // XATTR_SIZE_MAX

    // `name` prefixes log lines ("virtio-9p0").
    Server(std::unique_ptr<SharedTree> tree, ServerOptions options, std::string name);
    ~Server();

    // Handles one request. Its reply, at most `reply_limit` bytes in all (the
    // guest's buffers), goes into `reply` (cleared first: a caller reuses one
    // per thread), except an Rread's data when `data.read_into` is given:
    // that goes straight into those buffers and `reply` holds the Rread's
    // 11-byte head. Returns the bytes put there (0 for every other reply).
    // `reply` is left empty when the message cannot be answered.
    size_t handle(std::span<const uint8_t> message, size_t reply_limit, const DataBuffers& data,
                  std::vector<uint8_t>& reply);
    // The same with every byte of the reply in the returned vector (tests,
    // the fuzz target).
    std::vector<uint8_t> handle(std::span<const uint8_t> message, size_t reply_limit);
    // Forgets every fid and the msize (device reset).
    void reset();

    const SharedTree& tree() const { return *tree_; }
    const ServerOptions& options() const { return options_; }
    uint32_t msize() const { return msize_.load(); }

    struct Stats {
        uint64_t requests = 0;
        uint64_t errors = 0;     // Rlerror replies
        uint64_t malformed = 0;  // messages decode_request() refused
        uint64_t bytes_read = 0;
        uint64_t bytes_written = 0;
        size_t fids = 0;
    };
    Stats stats() const;

private:
    struct Fid;
    using FidPtr = std::shared_ptr<Fid>;

    // Each returns 0 with the reply body appended to `reply`, or an errno.
    int serve(const Version& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Auth& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Attach& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Flush& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Walk& m, std::vector<uint8_t>& reply, size_t limit);
    // `into`: DataBuffers::read_into; `direct` gets the bytes read there.
    int serve(const Read& m, std::vector<uint8_t>& reply, size_t limit, std::span<iovec> into, size_t& direct);
    // `from`: DataBuffers::write_from (empty: the data is in the message).
    int serve(const Write& m, std::vector<uint8_t>& reply, std::span<iovec> from);
    int serve(const Clunk& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Remove& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Statfs& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Lopen& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Lcreate& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Symlink& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Mknod& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Rename& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Readlink& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Getattr& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Setattr& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Xattrwalk& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Xattrcreate& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Readdir& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Fsync& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Lock& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Getlock& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Link& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Mkdir& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Renameat& m, std::vector<uint8_t>& reply, size_t limit);
    int serve(const Unlinkat& m, std::vector<uint8_t>& reply, size_t limit);

    FidPtr find(uint32_t fid) const;
    std::string path_of(const Fid& fid) const;
    // Adds `fid` under `number`: EEXIST if taken (unless `replace`), ENFILE at the limit.
    int add(uint32_t number, FidPtr fid, bool replace = false);
    FidPtr take(uint32_t number);
    // After a rename of `from` to `to`, fids beneath `from` follow it.
    void renamed(const std::string& from, const std::string& to);
    // Makes `name` in directory fid `dir`: the directory's O_PATH fd, or -errno.
    int directory_fd(uint32_t dir, std::string_view name, std::string* dir_path = nullptr) const;
    int commit_xattr(Fid& fid);
    // Tlock and Tgetlock alike: finds the open fid, holds it, turns the
    // request's range into a struct flock, and calls `act` with the fid's
    // descriptor: act(int fd, struct flock&) returns 0 or an errno. EBADF
    // or EINVAL before that. (Defined and used in the .cpp only.)
    template <typename LockRequest, typename Act>
    int with_lock_range(const LockRequest& m, Act act);
    // Opens `path` as an O_PATH fd into `fd` and stats it: 0 or an errno.
    int open_path(const std::string& path, UniqueFd& fd, struct stat& st) const;
    // The qid of the file at `path` (0) or an errno.
    int qid_at(const std::string& path, Qid& qid);

    std::unique_ptr<SharedTree> tree_;
    const ServerOptions options_;
    const std::string name_;
    std::atomic<uint32_t> msize_{0};

    mutable std::mutex table_mutex_;  // fids_ and every Fid's path
    std::unordered_map<uint32_t, FidPtr> fids_;

    std::atomic<uint64_t> requests_{0}, errors_{0}, malformed_{0}, bytes_read_{0}, bytes_written_{0};
    RateLimitedLog log_;
};

}  // namespace minikvm::p9
