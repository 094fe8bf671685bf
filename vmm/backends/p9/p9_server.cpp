#include "vmm/backends/p9/p9_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <shared_mutex>
#include <type_traits>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace minikvm::p9 {

namespace {

// 9P2000.L open flags (Linux's P9_DOTL_*), spelled out rather than assumed
// equal to the host's O_* values.
constexpr uint32_t kDotlAccessMask = 3;
constexpr uint32_t kDotlTrunc = 01000;
constexpr uint32_t kDotlAppend = 02000;
constexpr uint32_t kDotlDsync = 010000;
constexpr uint32_t kDotlDirectory = 0200000;
constexpr uint32_t kDotlSync = 04000000;

// Tsetattr's valid bits (P9_ATTR_*).
constexpr uint32_t kAttrMode = 0x1, kAttrUid = 0x2, kAttrGid = 0x4, kAttrSize = 0x8;
constexpr uint32_t kAttrAtime = 0x10, kAttrMtime = 0x20, kAttrAtimeSet = 0x80, kAttrMtimeSet = 0x100;
constexpr uint64_t kGetattrBasic = 0x7ff;  // P9_STATS_BASIC: what Rgetattr fills

constexpr uint32_t kAtRemoveDir = 0x200;  // P9_DOTL_AT_REMOVEDIR
constexpr uint8_t kLockRead = 0, kLockWrite = 1, kLockUnlock = 2;
constexpr uint8_t kLockSuccess = 0, kLockBlocked = 1, kLockError = 2;
constexpr uint32_t kV9fsMagic = 0x01021997;

Type reply_type(Type request) { return static_cast<Type>(static_cast<uint8_t>(request) + 1); }

struct stat stat_of(int fd, int* error) {
    struct stat st {};
    *error = ::fstat(fd, &st) == 0 ? 0 : errno;
    return st;
}

// Mode bits the guest may set: permissions and sticky; set-ID bits only on
// directories (where set-group-ID means group inheritance, not privilege).
mode_t allowed_mode(uint32_t mode, bool directory) {
    const mode_t keep = directory ? (07777 & ~S_ISUID) : 01777;
    return static_cast<mode_t>(mode) & keep;
}

std::string proc_fd_path(int fd) { return fmt::format("/proc/self/fd/{}", fd); }

// Keeps the first `count` bytes of `iov`: the entries needed, the last one
// shortened. Returns how many entries that is.
size_t clip(std::span<iovec> iov, size_t count) {
    size_t entries = 0;
    for (; entries < iov.size() && count > 0; ++entries) {
        iov[entries].iov_len = std::min(iov[entries].iov_len, count);
        count -= iov[entries].iov_len;
    }
    return entries;
}

// Drops the first `count` bytes of `iov` (a short pwritev's progress).
std::span<iovec> advance(std::span<iovec> iov, size_t count) {
    while (!iov.empty() && count >= iov.front().iov_len) {
        count -= iov.front().iov_len;
        iov = iov.subspan(1);
    }
    if (!iov.empty()) {
        iov.front().iov_base = static_cast<uint8_t*>(iov.front().iov_base) + count;
        iov.front().iov_len -= count;
    }
    return iov;
}

bool xattr_name_writable(std::string_view name) {
    return name.starts_with("user.") || name == "system.posix_acl_access" || name == "system.posix_acl_default";
}

}  // namespace

// One fid: a path in the tree, and what the guest did with it.
struct Server::Fid {
    enum class Kind { Path, XattrRead, XattrWrite };
    // Serializes requests on this fid, but for Tread: reads at several
    // offsets of one open file (a client reading ahead) run side by side.
    std::shared_mutex mutex;
    std::string path;  // guarded by table_mutex_ (renames move it)
    std::atomic<Kind> kind{Kind::Path};  // Txattrcreate changes it under `mutex`; read anywhere
    UniqueFd file;     // after Tlopen / Tlcreate
    bool directory = false;
    bool writable = false;
    std::vector<uint8_t> xattr;  // XattrRead: the value or list; XattrWrite: what came so far
    std::string xattr_name;
    uint64_t xattr_size = 0;
    int xattr_flags = 0;
};

Server::Server(std::unique_ptr<SharedTree> tree, ServerOptions options, std::string name)
    : tree_(std::move(tree)), options_(options), name_(std::move(name)) {}

Server::~Server() = default;

void Server::reset() {
    std::unordered_map<uint32_t, FidPtr> old;
    {
        std::lock_guard lock(table_mutex_);
        old.swap(fids_);
    }
    msize_ = 0;
}

Server::Stats Server::stats() const {
    Stats s;
    s.requests = requests_;
    s.errors = errors_;
    s.malformed = malformed_;
    s.bytes_read = bytes_read_;
    s.bytes_written = bytes_written_;
    std::lock_guard lock(table_mutex_);
    s.fids = fids_.size();
    return s;
}

std::vector<uint8_t> Server::handle(std::span<const uint8_t> message, size_t reply_limit) {
    std::vector<uint8_t> reply;
    handle(message, reply_limit, DataBuffers{}, reply);
    return reply;
}

size_t Server::handle(std::span<const uint8_t> message, size_t reply_limit, const DataBuffers& data,
                      std::vector<uint8_t>& reply) {
    ++requests_;
    reply.clear();
    // An Rlerror, if the guest's buffers hold one.
    auto answer_error = [&](uint16_t tag, int error) -> size_t {
        ++errors_;
        reply.clear();
        if (reply_limit >= kHeaderSize + 4) error_reply(tag, error, reply);
        return 0;
    };
    size_t external = 0;
    for (const iovec& piece : data.write_from) external += piece.iov_len;
    auto decoded = decode_request(message, external);
    if (auto* error = std::get_if<DecodeError>(&decoded)) {
        ++malformed_;
        log_.log(spdlog::level::warn, fmt::format("{}: malformed request: {}", name_, error->reason));
        if (!error->tag) {
            ++errors_;
            return 0;
        }
        return answer_error(*error->tag, error->error);
    }
    const Request& request = std::get<Request>(decoded);
    if (request.type != Type::Tversion && msize_ == 0) return answer_error(request.tag, EPROTO);
    // The reply never exceeds the negotiated msize either.
    const size_t limit = request.type == Type::Tversion ? reply_limit : std::min<size_t>(reply_limit, msize_);
    WireWriter out(reply);
    begin_reply(out, reply_type(request.type), request.tag);
    size_t direct = 0;  // Rread's data put straight into data.read_into
    int error = std::visit(
        [&](const auto& body) {
            using Body = std::decay_t<decltype(body)>;
            if constexpr (std::is_same_v<Body, Read>) return serve(body, reply, limit, data.read_into, direct);
            else if constexpr (std::is_same_v<Body, Write>) return serve(body, reply, data.write_from);
            else return serve(body, reply, limit);
        },
        request.body);
    if (error == 0 && reply.size() + direct > limit) error = ENOBUFS;
    if (error != 0) return answer_error(request.tag, error);
    patch_u32(reply, 0, static_cast<uint32_t>(reply.size() + direct));
    return direct;
}

// --- The fid table ------------------------------------------------------------

Server::FidPtr Server::find(uint32_t number) const {
    std::lock_guard lock(table_mutex_);
    auto it = fids_.find(number);
    return it == fids_.end() ? nullptr : it->second;
}

std::string Server::path_of(const Fid& fid) const {
    std::lock_guard lock(table_mutex_);
    return fid.path;
}

int Server::add(uint32_t number, FidPtr fid, bool replace) {
    if (number == kNoFid) return EINVAL;
    std::lock_guard lock(table_mutex_);
    auto it = fids_.find(number);
    if (it != fids_.end()) {
        if (!replace) return EEXIST;
        it->second = std::move(fid);
        return 0;
    }
    if (fids_.size() >= kMaxFids) return ENFILE;
    fids_.emplace(number, std::move(fid));
    return 0;
}

Server::FidPtr Server::take(uint32_t number) {
    std::lock_guard lock(table_mutex_);
    auto it = fids_.find(number);
    if (it == fids_.end()) return nullptr;
    FidPtr fid = std::move(it->second);
    fids_.erase(it);
    return fid;
}

void Server::renamed(const std::string& from, const std::string& to) {
    std::lock_guard lock(table_mutex_);
    for (auto& [number, fid] : fids_) {
        if (fid->path == from) fid->path = to;
        else if (fid->path.size() > from.size() && fid->path.starts_with(from) && fid->path[from.size()] == '/')
            fid->path = to + fid->path.substr(from.size());
    }
}

int Server::directory_fd(uint32_t dir, std::string_view name, std::string* dir_path) const {
    FidPtr fid = find(dir);
    if (!fid || fid->kind != Fid::Kind::Path) return -EBADF;
    if (!SharedTree::valid_name(name)) return -EINVAL;
    std::string path = path_of(*fid);
    const int fd = tree_->open_directory(path);
    if (dir_path) *dir_path = std::move(path);
    return fd;
}

int Server::open_path(const std::string& path, UniqueFd& fd, struct stat& st) const {
    const int opened = tree_->open_beneath(path, O_PATH);
    if (opened < 0) return -opened;
    fd.reset(opened);
    return ::fstat(opened, &st) == 0 ? 0 : errno;
}

int Server::qid_at(const std::string& path, Qid& qid) {
    UniqueFd fd;
    struct stat st;
    if (int error = open_path(path, fd, st)) return error;
    qid = tree_->qid_for(st);
    return 0;
}

// --- Session ----------------------------------------------------------------------

int Server::serve(const Version& m, std::vector<uint8_t>& reply, size_t) {
    reset();
    const uint32_t msize = std::min(m.msize, kMaxMsize);
    // A version this server does not speak is answered "unknown" (version(5)).
    const bool dotl = m.version.starts_with("9P2000.L");
    if (dotl) msize_ = std::max<uint32_t>(msize, kHeaderSize + 4);
    WireWriter out(reply);
    out.u32(msize);
    out.string(dotl ? "9P2000.L" : "unknown");
    return 0;
}

int Server::serve(const Auth&, std::vector<uint8_t>&, size_t) { return EOPNOTSUPP; }  // no authentication

int Server::serve(const Attach& m, std::vector<uint8_t>& reply, size_t) {
    if (m.afid != kNoFid) return EINVAL;
    Qid qid;
    if (int error = qid_at("", qid)) return error;
    auto fid = std::make_shared<Fid>();
    if (int error = add(m.fid, fid)) return error;
    WireWriter(reply).qid(qid);
    return 0;
}

int Server::serve(const Flush&, std::vector<uint8_t>&, size_t) { return 0; }  // ordering is the transport's

int Server::serve(const Walk& m, std::vector<uint8_t>& reply, size_t) {
    FidPtr fid = find(m.fid);
    if (!fid || fid->kind != Fid::Kind::Path) return EBADF;
    if (m.newfid != m.fid && find(m.newfid)) return EEXIST;
    if (m.newfid == m.fid) {
        // Walking an open fid onto itself would repoint it at another file
        // while its descriptor still reads the old one.
        std::lock_guard lock(fid->mutex);
        if (fid->file) return EBUSY;
    }
    std::string path = path_of(*fid);
    std::vector<Qid> qids;
    for (std::string_view name : m.names) {
        std::string next;
        if (name == "..") next = SharedTree::parent_of(path);
        else if (SharedTree::valid_name(name)) next = SharedTree::join(path, name);
        else {
            if (qids.empty()) return ENOENT;
            break;
        }
        Qid qid;
        if (int error = qid_at(next, qid)) {
            if (qids.empty()) return error;
            break;  // a partial walk: the qids so far, newfid untouched
        }
        qids.push_back(qid);
        path = std::move(next);
    }
    if (qids.size() == m.names.size()) {
        auto walked = std::make_shared<Fid>();
        walked->path = path;
        if (int error = add(m.newfid, walked, m.newfid == m.fid)) return error;
    }
    WireWriter out(reply);
    out.u16(static_cast<uint16_t>(qids.size()));
    for (const Qid& qid : qids) out.qid(qid);
    return 0;
}

int Server::serve(const Clunk& m, std::vector<uint8_t>&, size_t) {
    FidPtr fid = take(m.fid);
    if (!fid) return EBADF;
    std::lock_guard lock(fid->mutex);
    return fid->kind == Fid::Kind::XattrWrite ? commit_xattr(*fid) : 0;
}

// --- Reading and writing -------------------------------------------------------

int Server::serve(const Lopen& m, std::vector<uint8_t>& reply, size_t) {
    FidPtr fid = find(m.fid);
    if (!fid || fid->kind != Fid::Kind::Path) return EBADF;
    std::lock_guard lock(fid->mutex);
    if (fid->file) return EBUSY;
    const uint32_t access = m.flags & kDotlAccessMask;
    if (access == 3) return EINVAL;
    const bool writes = access != 0 || (m.flags & kDotlTrunc) != 0;
    if (writes && options_.read_only) return EROFS;
    int flags = access == 0 ? O_RDONLY : access == 1 ? O_WRONLY : O_RDWR;
    if (m.flags & kDotlTrunc) flags |= O_TRUNC;
    if (m.flags & kDotlAppend) flags |= O_APPEND;
    if (m.flags & kDotlDsync) flags |= O_DSYNC;
    if (m.flags & kDotlSync) flags |= O_SYNC;

    UniqueFd path_owner;
    struct stat st;
    if (int error = open_path(path_of(*fid), path_owner, st)) return error;
    const int path_fd = path_owner.get();
    if (S_ISLNK(st.st_mode)) return ELOOP;
    if ((m.flags & kDotlDirectory) && !S_ISDIR(st.st_mode)) return ENOTDIR;
    if (S_ISDIR(st.st_mode) && writes) return EISDIR;
    const bool special = !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
    if (special && !options_.allow_devices) return EPERM;
    // A FIFO must not hold a worker until a writer comes.
    if (special) flags |= O_NONBLOCK;
    const int fd = SharedTree::reopen(path_fd, flags);
    if (fd < 0) return -fd;
    fid->file.reset(fd);
    fid->directory = S_ISDIR(st.st_mode);
    fid->writable = access != 0;
    WireWriter out(reply);
    out.qid(tree_->qid_for(st));
    out.u32(0);  // iounit: the client's own msize-based choice
    return 0;
}

int Server::serve(const Lcreate& m, std::vector<uint8_t>& reply, size_t) {
    if (options_.read_only) return EROFS;
    FidPtr fid = find(m.fid);
    if (!fid || fid->kind != Fid::Kind::Path) return EBADF;
    std::lock_guard lock(fid->mutex);
    if (fid->file) return EBUSY;
    std::string dir_path;
    const int dir = directory_fd(m.fid, m.name, &dir_path);
    if (dir < 0) return -dir;
    UniqueFd dir_owner(dir);
    const uint32_t access = m.flags & kDotlAccessMask;
    int flags = O_CREAT | O_NOFOLLOW | O_CLOEXEC | (access == 0 ? O_RDONLY : access == 1 ? O_WRONLY : O_RDWR);
    if (access == 3) return EINVAL;
    if (m.flags & kDotlTrunc) flags |= O_TRUNC;
    if (m.flags & kDotlAppend) flags |= O_APPEND;
    if (m.flags & 0200) flags |= O_EXCL;  // P9_DOTL_EXCL
    const std::string name(m.name);
    const int fd = ::openat(dir, name.c_str(), flags, allowed_mode(m.mode, false));
    if (fd < 0) return errno;
    UniqueFd file(fd);
    int error = 0;
    const struct stat st = stat_of(fd, &error);
    if (error) return error;
    if (!S_ISREG(st.st_mode)) return EPERM;  // an existing FIFO or device came back
    fid->file = std::move(file);
    fid->directory = false;
    fid->writable = access != 0;
    {
        std::lock_guard table(table_mutex_);
        fid->path = SharedTree::join(dir_path, name);
    }
    WireWriter out(reply);
    out.qid(tree_->qid_for(st));
    out.u32(0);
    return 0;
}

int Server::serve(const Read& m, std::vector<uint8_t>& reply, size_t limit, std::span<iovec> into, size_t& direct) {
    FidPtr fid = find(m.fid);
    if (!fid) return EBADF;
    // Shared: a read changes nothing in the fid (an XattrRead fid's value
    // was made by Txattrwalk, before the fid could be used).
    std::shared_lock lock(fid->mutex);
    const size_t room = limit > kReadHeader ? limit - kReadHeader : 0;
    const size_t count = std::min<size_t>(m.count, room);
    const size_t start = reply.size();
    WireWriter(reply).u32(0);
    if (fid->kind == Fid::Kind::XattrRead) {  // small, and already in memory: into the reply
        const size_t offset = std::min<uint64_t>(m.offset, fid->xattr.size());
        const size_t n = std::min(count, fid->xattr.size() - offset);
        reply.insert(reply.end(), fid->xattr.begin() + static_cast<std::ptrdiff_t>(offset),
                     fid->xattr.begin() + static_cast<std::ptrdiff_t>(offset + n));
        patch_u32(reply, start, static_cast<uint32_t>(n));
        return 0;
    }
    if (fid->kind != Fid::Kind::Path || !fid->file || fid->directory) return EBADF;
    if (m.offset > static_cast<uint64_t>(INT64_MAX)) return EINVAL;
    iovec in_reply{};
    if (into.empty()) {  // no guest buffers given: the data follows the count in `reply`
        reply.resize(start + 4 + count);
        in_reply = {reply.data() + start + 4, count};
        into = std::span(&in_reply, 1);
    }
    // More entries than IOV_MAX: fewer bytes, a short read the client continues.
    const int entries = static_cast<int>(std::min<size_t>(clip(into, count), IOV_MAX));
    ssize_t n;
    do n = ::preadv(fid->file.get(), into.data(), entries, static_cast<off_t>(m.offset));
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno;
    if (in_reply.iov_base) reply.resize(start + 4 + static_cast<size_t>(n));
    else direct = static_cast<size_t>(n);
    patch_u32(reply, start, static_cast<uint32_t>(n));
    bytes_read_ += static_cast<uint64_t>(n);
    return 0;
}

int Server::serve(const Write& m, std::vector<uint8_t>& reply, std::span<iovec> from) {
    FidPtr fid = find(m.fid);
    if (!fid) return EBADF;
    std::lock_guard lock(fid->mutex);
    if (fid->kind == Fid::Kind::XattrWrite) {
        // The value comes in order, and no more than Txattrcreate announced.
        if (m.offset != fid->xattr.size() || fid->xattr.size() + m.count > fid->xattr_size) return EINVAL;
        fid->xattr.insert(fid->xattr.end(), m.data.begin(), m.data.end());
        for (const iovec& piece : from) {
            const auto* bytes = static_cast<const uint8_t*>(piece.iov_base);
            fid->xattr.insert(fid->xattr.end(), bytes, bytes + piece.iov_len);
        }
        WireWriter(reply).u32(m.count);
        return 0;
    }
    if (fid->kind != Fid::Kind::Path || !fid->file || fid->directory || !fid->writable) return EBADF;
    if (options_.read_only) return EROFS;
    if (m.offset > static_cast<uint64_t>(INT64_MAX)) return EINVAL;
    iovec in_message{const_cast<uint8_t*>(m.data.data()), m.data.size()};  // pwritev only reads it
    std::span<iovec> rest = from.empty() ? std::span(&in_message, 1) : from;
    size_t done = 0;
    while (done < m.count && !rest.empty()) {
        const int entries = static_cast<int>(std::min<size_t>(rest.size(), IOV_MAX));
        const ssize_t n = ::pwritev(fid->file.get(), rest.data(), entries, static_cast<off_t>(m.offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (done == 0) return n < 0 ? errno : EIO;
            break;  // a short write: what was written counts
        }
        done += static_cast<size_t>(n);
        rest = advance(rest, static_cast<size_t>(n));
    }
    bytes_written_ += done;
    WireWriter(reply).u32(static_cast<uint32_t>(done));
    return 0;
}

int Server::serve(const Readdir& m, std::vector<uint8_t>& reply, size_t limit) {
    FidPtr fid = find(m.fid);
    if (!fid) return EBADF;
    std::lock_guard lock(fid->mutex);
    if (fid->kind != Fid::Kind::Path || !fid->file) return EBADF;
    if (!fid->directory) return ENOTDIR;
    const size_t room = limit > kReadHeader ? limit - kReadHeader : 0;
    const size_t count = std::min<size_t>(m.count, room);
    if (m.offset > static_cast<uint64_t>(INT64_MAX)) return EINVAL;
    if (::lseek(fid->file.get(), static_cast<off_t>(m.offset), SEEK_SET) < 0) return errno;
    int error = 0;
    const struct stat dir_st = stat_of(fid->file.get(), &error);
    if (error) return error;

    const size_t start = reply.size();
    WireWriter out(reply);
    out.u32(0);
    // getdents64 fills this as often as it takes: a fixed buffer on the
    // stack, where one sized to `count` (up to msize) was allocated and
    // zeroed for every request.
    alignas(struct dirent64) std::array<uint8_t, 16384> entries;
    size_t used = 0;
    bool full = false;
    while (!full) {
        const long n = ::syscall(SYS_getdents64, fid->file.get(), entries.data(), entries.size());
        if (n < 0) {
            if (used == 0) return errno;
            break;
        }
        if (n == 0) break;
        for (long at = 0; at < n;) {
            auto* entry = reinterpret_cast<const struct dirent64*>(entries.data() + at);
            at += entry->d_reclen;
            const std::string_view name(entry->d_name);
            const size_t size = kQidSize + 8 + 1 + 2 + name.size();
            if (used + size > count) {
                full = true;
                break;
            }
            struct stat st {};
            st.st_dev = dir_st.st_dev;
            st.st_ino = entry->d_ino;
            st.st_mode = entry->d_type == DT_DIR ? S_IFDIR : entry->d_type == DT_LNK ? S_IFLNK : S_IFREG;
            out.qid(tree_->qid_for(st));
            out.u64(static_cast<uint64_t>(entry->d_off));
            out.u8(entry->d_type);
            out.string(name);
            used += size;
        }
    }
    if (used == 0 && full) return EINVAL;  // not even one entry fits in `count`
    patch_u32(reply, start, static_cast<uint32_t>(used));
    return 0;
}

int Server::serve(const Fsync& m, std::vector<uint8_t>&, size_t) {
    FidPtr fid = find(m.fid);
    if (!fid) return EBADF;
    std::lock_guard lock(fid->mutex);
    if (fid->kind != Fid::Kind::Path || !fid->file) return EBADF;
    const int rc = m.datasync ? ::fdatasync(fid->file.get()) : ::fsync(fid->file.get());
    return rc == 0 ? 0 : errno;
}

// --- Attributes ---------------------------------------------------------------------

int Server::serve(const Getattr& m, std::vector<uint8_t>& reply, size_t) {
    FidPtr fid = find(m.fid);
    if (!fid || fid->kind != Fid::Kind::Path) return EBADF;
    UniqueFd fd;
    struct stat st;
    if (int error = open_path(path_of(*fid), fd, st)) return error;
    WireWriter out(reply);
    out.u64(kGetattrBasic);
    out.qid(tree_->qid_for(st));
    out.u32(st.st_mode);
    out.u32(st.st_uid);
    out.u32(st.st_gid);
    out.u64(st.st_nlink);
    out.u64(st.st_rdev);
    out.u64(static_cast<uint64_t>(st.st_size));
    out.u64(static_cast<uint64_t>(st.st_blksize));
    out.u64(static_cast<uint64_t>(st.st_blocks));
    out.u64(static_cast<uint64_t>(st.st_atim.tv_sec));
    out.u64(static_cast<uint64_t>(st.st_atim.tv_nsec));
    out.u64(static_cast<uint64_t>(st.st_mtim.tv_sec));
    out.u64(static_cast<uint64_t>(st.st_mtim.tv_nsec));
    out.u64(static_cast<uint64_t>(st.st_ctim.tv_sec));
    out.u64(static_cast<uint64_t>(st.st_ctim.tv_nsec));
    for (int i = 0; i < 4; ++i) out.u64(0);  // btime, gen, data_version: not in BASIC
    return 0;
}

int Server::serve(const Setattr& m, std::vector<uint8_t>&, size_t) {
    if (options_.read_only) return EROFS;
    FidPtr fid = find(m.fid);
    if (!fid || fid->kind != Fid::Kind::Path) return EBADF;
    std::lock_guard lock(fid->mutex);
    const std::string path = path_of(*fid);
    UniqueFd path_owner;
    struct stat st;
    if (int error = open_path(path, path_owner, st)) return error;
    const int path_fd = path_owner.get();
    const bool link = S_ISLNK(st.st_mode);
    const std::string proc = proc_fd_path(path_fd);

    if (m.valid & kAttrMode) {
        if (link) return EOPNOTSUPP;  // Linux has no modes on symbolic links
        if (::chmod(proc.c_str(), allowed_mode(m.mode, S_ISDIR(st.st_mode))) != 0) return errno;
    }
    if (m.valid & (kAttrUid | kAttrGid)) {
        const uid_t uid = (m.valid & kAttrUid) ? m.uid : static_cast<uid_t>(-1);
        const gid_t gid = (m.valid & kAttrGid) ? m.gid : static_cast<gid_t>(-1);
        if (::fchownat(path_fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0 && errno != EPERM)
            return errno;
    }
    if (m.valid & kAttrSize) {
        if (!S_ISREG(st.st_mode)) return S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        if (m.size > static_cast<uint64_t>(INT64_MAX)) return EFBIG;
        int fd = fid->file && fid->writable ? fid->file.get() : -1;
        UniqueFd opened;
        if (fd < 0) {
            fd = SharedTree::reopen(path_fd, O_WRONLY);
            if (fd < 0) return -fd;
            opened.reset(fd);
        }
        if (::ftruncate(fd, static_cast<off_t>(m.size)) != 0) return errno;
    }
    if (m.valid & (kAttrAtime | kAttrMtime)) {
        struct timespec times[2];
        auto pick = [](bool change, bool set, uint64_t sec, uint64_t nsec, struct timespec& out) {
            out.tv_sec = static_cast<time_t>(sec);
            out.tv_nsec = !change ? UTIME_OMIT : set ? static_cast<long>(nsec) : UTIME_NOW;
        };
        pick(m.valid & kAttrAtime, m.valid & kAttrAtimeSet, m.atime_sec, m.atime_nsec, times[0]);
        pick(m.valid & kAttrMtime, m.valid & kAttrMtimeSet, m.mtime_sec, m.mtime_nsec, times[1]);
        int rc;
        if (link) {
            const int parent = tree_->open_directory(SharedTree::parent_of(path));
            if (parent < 0) return -parent;
            UniqueFd parent_owner(parent);
            rc = ::utimensat(parent, SharedTree::base_of(path).c_str(), times, AT_SYMLINK_NOFOLLOW);
        } else {
            rc = ::utimensat(AT_FDCWD, proc.c_str(), times, 0);
        }
        if (rc != 0) return errno;
    }
    return 0;  // CTIME alone: the kernel updates it with any change
}

int Server::serve(const Statfs& m, std::vector<uint8_t>& reply, size_t) {
    FidPtr fid = find(m.fid);
    if (!fid || fid->kind != Fid::Kind::Path) return EBADF;
    const int fd = tree_->open_beneath(path_of(*fid), O_PATH);
    if (fd < 0) return -fd;
    UniqueFd owner(fd);
    struct statfs sf {};
    if (::fstatfs(fd, &sf) != 0) return errno;
    WireWriter out(reply);
    out.u32(kV9fsMagic);
    out.u32(static_cast<uint32_t>(sf.f_bsize));
    out.u64(sf.f_blocks);
    out.u64(sf.f_bfree);
    out.u64(sf.f_bavail);
    out.u64(sf.f_files);
    out.u64(sf.f_ffree);
    uint64_t fsid = 0;
    std::memcpy(&fsid, &sf.f_fsid, std::min(sizeof fsid, sizeof sf.f_fsid));
    out.u64(fsid);
    out.u32(static_cast<uint32_t>(sf.f_namelen));
    return 0;
}

int Server::serve(const Readlink& m, std::vector<uint8_t>& reply, size_t) {
    FidPtr fid = find(m.fid);
    if (!fid || fid->kind != Fid::Kind::Path) return EBADF;
    const int fd = tree_->open_beneath(path_of(*fid), O_PATH);
    if (fd < 0) return -fd;
    UniqueFd owner(fd);
    char target[PATH_MAX];
    const ssize_t n = ::readlinkat(fd, "", target, sizeof target);
    if (n < 0) return errno == ENOENT ? EINVAL : errno;  // "" on a non-link: not a link
    WireWriter(reply).string(std::string_view(target, static_cast<size_t>(n)));
    return 0;
}

// --- Extended attributes -------------------------------------------------------------

int Server::serve(const Xattrwalk& m, std::vector<uint8_t>& reply, size_t) {
    FidPtr fid = find(m.fid);
    if (!fid || fid->kind != Fid::Kind::Path) return EBADF;
    if (m.name.find('\0') != std::string_view::npos) return EINVAL;
    UniqueFd owner;
    struct stat st;
    if (int error = open_path(path_of(*fid), owner, st)) return error;
    const int path_fd = owner.get();
    auto walked = std::make_shared<Fid>();
    walked->path = path_of(*fid);
    walked->kind = Fid::Kind::XattrRead;
    // Through /proc/self/fd a symbolic link would be followed: links get no
    // extended attributes here.
    if (!S_ISLNK(st.st_mode)) {
        const std::string proc = proc_fd_path(path_fd);
        const std::string name(m.name);
        walked->xattr.resize(kMaxXattrSize);
        const ssize_t n = name.empty()
                              ? ::listxattr(proc.c_str(), reinterpret_cast<char*>(walked->xattr.data()),
                                            walked->xattr.size())
                              : ::getxattr(proc.c_str(), name.c_str(), walked->xattr.data(), walked->xattr.size());
        if (n < 0) return errno;
        walked->xattr.resize(static_cast<size_t>(n));
    } else if (!m.name.empty()) {
        return ENODATA;
    }
    const uint64_t size = walked->xattr.size();
    if (int add_error = add(m.newfid, std::move(walked), m.newfid == m.fid)) return add_error;
    WireWriter(reply).u64(size);
    return 0;
}

int Server::serve(const Xattrcreate& m, std::vector<uint8_t>&, size_t) {
    if (options_.read_only) return EROFS;
    FidPtr fid = find(m.fid);
    if (!fid || fid->kind != Fid::Kind::Path) return EBADF;
    std::lock_guard lock(fid->mutex);
    if (fid->file) return EBUSY;
    if (m.name.empty() || m.name.find('\0') != std::string_view::npos) return EINVAL;
    if (!xattr_name_writable(m.name)) return EOPNOTSUPP;
    if (m.size > kMaxXattrSize) return E2BIG;
    if ((m.flags & ~static_cast<uint32_t>(XATTR_CREATE | XATTR_REPLACE)) != 0) return EINVAL;
    fid->kind = Fid::Kind::XattrWrite;
    fid->xattr_name = std::string(m.name);
    fid->xattr_size = m.size;
    fid->xattr_flags = static_cast<int>(m.flags);
    fid->xattr.clear();
    return 0;
}

int Server::commit_xattr(Fid& fid) {
    if (fid.xattr.size() != fid.xattr_size) return EINVAL;  // the value never fully came
    UniqueFd owner;
    struct stat st;
    if (int error = open_path(fid.path, owner, st)) return error;
    const int path_fd = owner.get();
    if (S_ISLNK(st.st_mode)) return EOPNOTSUPP;
    const std::string proc = proc_fd_path(path_fd);
    // Linux's client removes an attribute as an empty replace.
    const int rc = fid.xattr_size == 0 && (fid.xattr_flags & XATTR_REPLACE)
                       ? ::removexattr(proc.c_str(), fid.xattr_name.c_str())
                       : ::setxattr(proc.c_str(), fid.xattr_name.c_str(), fid.xattr.data(), fid.xattr.size(),
                                    fid.xattr_flags);
    return rc == 0 ? 0 : errno;
}

// --- Changing the tree -----------------------------------------------------------

int Server::serve(const Mkdir& m, std::vector<uint8_t>& reply, size_t) {
    if (options_.read_only) return EROFS;
    const int dir = directory_fd(m.dfid, m.name);
    if (dir < 0) return -dir;
    UniqueFd owner(dir);
    const std::string name(m.name);
    if (::mkdirat(dir, name.c_str(), allowed_mode(m.mode, true)) != 0) return errno;
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
    WireWriter(reply).qid(tree_->qid_for(st));
    return 0;
}

int Server::serve(const Symlink& m, std::vector<uint8_t>& reply, size_t) {
    if (options_.read_only) return EROFS;
    if (m.target.empty() || m.target.find('\0') != std::string_view::npos) return EINVAL;
    const int dir = directory_fd(m.fid, m.name);
    if (dir < 0) return -dir;
    UniqueFd owner(dir);
    const std::string name(m.name);
    // The target is only text to the server: it never follows it.
    if (::symlinkat(std::string(m.target).c_str(), dir, name.c_str()) != 0) return errno;
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
    WireWriter(reply).qid(tree_->qid_for(st));
    return 0;
}

int Server::serve(const Mknod& m, std::vector<uint8_t>& reply, size_t) {
    if (options_.read_only) return EROFS;
    const mode_t type = m.mode & S_IFMT;
    const bool device = type == S_IFCHR || type == S_IFBLK;
    if (type != S_IFREG && type != S_IFIFO && type != S_IFSOCK && !device) return EINVAL;
    // A device node the guest makes could name any host device (the host's
    // disk): never, whatever the share allows.
    if (device) return EPERM;
    if (type != S_IFREG && !options_.allow_devices) return EPERM;
    const int dir = directory_fd(m.dfid, m.name);
    if (dir < 0) return -dir;
    UniqueFd owner(dir);
    const std::string name(m.name);
    if (::mknodat(dir, name.c_str(), type | allowed_mode(m.mode, false), makedev(m.major, m.minor)) != 0)
        return errno;
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
    WireWriter(reply).qid(tree_->qid_for(st));
    return 0;
}

int Server::serve(const Link& m, std::vector<uint8_t>&, size_t) {
    if (options_.read_only) return EROFS;
    FidPtr target = find(m.fid);
    if (!target || target->kind != Fid::Kind::Path) return EBADF;
    const std::string target_path = path_of(*target);
    if (target_path.empty()) return EPERM;  // the root
    const int dir = directory_fd(m.dfid, m.name);
    if (dir < 0) return -dir;
    UniqueFd owner(dir);
    const int target_dir = tree_->open_directory(SharedTree::parent_of(target_path));
    if (target_dir < 0) return -target_dir;
    UniqueFd target_owner(target_dir);
    // No AT_SYMLINK_FOLLOW: a link to a symbolic link links the link.
    if (::linkat(target_dir, SharedTree::base_of(target_path).c_str(), dir, std::string(m.name).c_str(), 0) != 0)
        return errno;
    return 0;
}

int Server::serve(const Rename& m, std::vector<uint8_t>&, size_t) {
    if (options_.read_only) return EROFS;
    FidPtr fid = find(m.fid);
    if (!fid || fid->kind != Fid::Kind::Path) return EBADF;
    const std::string from = path_of(*fid);
    if (from.empty()) return EBUSY;  // the root
    std::string to_dir;
    const int dir = directory_fd(m.dfid, m.name, &to_dir);
    if (dir < 0) return -dir;
    UniqueFd owner(dir);
    const int from_dir = tree_->open_directory(SharedTree::parent_of(from));
    if (from_dir < 0) return -from_dir;
    UniqueFd from_owner(from_dir);
    if (::renameat(from_dir, SharedTree::base_of(from).c_str(), dir, std::string(m.name).c_str()) != 0) return errno;
    renamed(from, SharedTree::join(to_dir, m.name));
    return 0;
}

int Server::serve(const Renameat& m, std::vector<uint8_t>&, size_t) {
    if (options_.read_only) return EROFS;
    std::string from_dir_path, to_dir_path;
    const int from_dir = directory_fd(m.olddirfid, m.oldname, &from_dir_path);
    if (from_dir < 0) return -from_dir;
    UniqueFd from_owner(from_dir);
    const int to_dir = directory_fd(m.newdirfid, m.newname, &to_dir_path);
    if (to_dir < 0) return -to_dir;
    UniqueFd to_owner(to_dir);
    if (::renameat(from_dir, std::string(m.oldname).c_str(), to_dir, std::string(m.newname).c_str()) != 0)
        return errno;
    renamed(SharedTree::join(from_dir_path, m.oldname), SharedTree::join(to_dir_path, m.newname));
    return 0;
}

int Server::serve(const Unlinkat& m, std::vector<uint8_t>&, size_t) {
    if (options_.read_only) return EROFS;
    if ((m.flags & ~kAtRemoveDir) != 0) return EINVAL;
    const int dir = directory_fd(m.dirfid, m.name);
    if (dir < 0) return -dir;
    UniqueFd owner(dir);
    const int flags = (m.flags & kAtRemoveDir) ? AT_REMOVEDIR : 0;
    return ::unlinkat(dir, std::string(m.name).c_str(), flags) == 0 ? 0 : errno;
}

int Server::serve(const Remove& m, std::vector<uint8_t>&, size_t) {
    // Tremove clunks the fid whatever happens (remove(5)).
    FidPtr fid = take(m.fid);
    if (!fid || fid->kind != Fid::Kind::Path) return EBADF;
    if (options_.read_only) return EROFS;
    const std::string path = fid->path;  // no longer in the table: renames cannot move it
    if (path.empty()) return EBUSY;
    const int dir = tree_->open_directory(SharedTree::parent_of(path));
    if (dir < 0) return -dir;
    UniqueFd owner(dir);
    const std::string base = SharedTree::base_of(path);
    struct stat st {};
    if (::fstatat(dir, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno;
    return ::unlinkat(dir, base.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) == 0 ? 0 : errno;
}

// --- Locks ------------------------------------------------------------------------------

// The byte range of a Tlock/Tgetlock as a struct flock, or EINVAL.
static int byte_range_lock(uint8_t type, uint64_t start, uint64_t length, struct flock& lock) {
    if (type > kLockUnlock) return EINVAL;
    if (start > static_cast<uint64_t>(INT64_MAX) || length > static_cast<uint64_t>(INT64_MAX)) return EINVAL;
    lock = {};
    lock.l_type = type == kLockRead ? F_RDLCK : type == kLockWrite ? F_WRLCK : F_UNLCK;
    lock.l_whence = SEEK_SET;
    lock.l_start = static_cast<off_t>(start);
    lock.l_len = static_cast<off_t>(length);  // 0: to the end of the file
    return 0;
}

template <typename LockRequest, typename Act>
int Server::with_lock_range(const LockRequest& m, Act act) {
    FidPtr fid = find(m.fid);
    if (!fid) return EBADF;
    std::lock_guard guard(fid->mutex);
    if (fid->kind != Fid::Kind::Path || !fid->file) return EBADF;
    struct flock lock;
    if (int error = byte_range_lock(m.type, m.start, m.length, lock)) return error;
    return act(fid->file.get(), lock);
}

int Server::serve(const Lock& m, std::vector<uint8_t>& reply, size_t) {
    return with_lock_range(m, [&](int fd, struct flock& lock) {
        // Open-file-description locks belong to the fid, not to this
        // process's threads; never blocking: the client retries a BLOCKED
        // answer.
        uint8_t status = kLockSuccess;
        if (::fcntl(fd, F_OFD_SETLK, &lock) != 0)
            status = (errno == EAGAIN || errno == EACCES) ? kLockBlocked : kLockError;
        WireWriter(reply).u8(status);
        return 0;
    });
}

int Server::serve(const Getlock& m, std::vector<uint8_t>& reply, size_t) {
    return with_lock_range(m, [&](int fd, struct flock& lock) {
        if (::fcntl(fd, F_OFD_GETLK, &lock) != 0) return errno;
        WireWriter out(reply);
        out.u8(lock.l_type == F_RDLCK ? kLockRead : lock.l_type == F_WRLCK ? kLockWrite : kLockUnlock);
        out.u64(static_cast<uint64_t>(lock.l_start));
        out.u64(static_cast<uint64_t>(lock.l_len));
        out.u32(static_cast<uint32_t>(lock.l_pid));
        out.string(m.client_id);
        return 0;
    });
}

}  // namespace minikvm::p9
