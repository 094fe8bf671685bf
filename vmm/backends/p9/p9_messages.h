#pragma once
// 9P2000.L requests as the guest sends them, decoded from bytes by a pure
// parser (decode_request) that trusts nothing: the size field must match the
// message, every field must fit, nothing may follow the last field. What a
// field means (whether a name is acceptable, a fid exists) is the server's
// business; this only says what was sent.
//
// Message numbers and layouts: Linux's include/net/9p/9p.h and the 9P2000.L
// description (diod's protocol.md), which QEMU and kvmtool follow too.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "vmm/backends/p9/p9_wire.h"

namespace minikvm::p9 {

enum class Type : uint8_t {
    Tlerror = 6, Rlerror = 7,
    Tstatfs = 8, Rstatfs = 9,
    Tlopen = 12, Rlopen = 13,
    Tlcreate = 14, Rlcreate = 15,
    Tsymlink = 16, Rsymlink = 17,
    Tmknod = 18, Rmknod = 19,
    Trename = 20, Rrename = 21,
    Treadlink = 22, Rreadlink = 23,
    Tgetattr = 24, Rgetattr = 25,
    Tsetattr = 26, Rsetattr = 27,
    Txattrwalk = 30, Rxattrwalk = 31,
    Txattrcreate = 32, Rxattrcreate = 33,
    Treaddir = 40, Rreaddir = 41,
    Tfsync = 50, Rfsync = 51,
    Tlock = 52, Rlock = 53,
    Tgetlock = 54, Rgetlock = 55,
    Tlink = 70, Rlink = 71,
    Tmkdir = 72, Rmkdir = 73,
    Trenameat = 74, Rrenameat = 75,
    Tunlinkat = 76, Runlinkat = 77,
    Tversion = 100, Rversion = 101,
    Tauth = 102, Rauth = 103,
    Tattach = 104, Rattach = 105,
    Tflush = 108, Rflush = 109,
    Twalk = 110, Rwalk = 111,
    Tread = 116, Rread = 117,
    Twrite = 118, Rwrite = 119,
    Tclunk = 120, Rclunk = 121,
    Tremove = 122, Rremove = 123,
};

inline constexpr size_t kHeaderSize = 7;        // size[4] type[1] tag[2]
inline constexpr uint16_t kNoTag = 0xffff;      // Tversion's tag
inline constexpr uint32_t kNoFid = 0xffffffff;  // "no afid"
inline constexpr size_t kMaxWalkNames = 16;     // P9_MAXWELEM
inline constexpr size_t kWriteFields = kHeaderSize + 16;  // Twrite up to its data: fid[4] offset[8] count[4]
inline constexpr size_t kReadHeader = kHeaderSize + 4;    // Rread up to its data: count[4]

struct Version { uint32_t msize; std::string_view version; };
struct Auth { uint32_t afid; std::string_view uname, aname; uint32_t n_uname; };
struct Attach { uint32_t fid, afid; std::string_view uname, aname; uint32_t n_uname; };
struct Flush { uint16_t oldtag; };
struct Walk { uint32_t fid, newfid; std::vector<std::string_view> names; };
struct Read { uint32_t fid; uint64_t offset; uint32_t count; };
struct Write { uint32_t fid; uint64_t offset; uint32_t count; std::span<const uint8_t> data; };  // data: empty when external
struct Clunk { uint32_t fid; };
struct Remove { uint32_t fid; };
struct Statfs { uint32_t fid; };
struct Lopen { uint32_t fid, flags; };
struct Lcreate { uint32_t fid; std::string_view name; uint32_t flags, mode, gid; };
struct Symlink { uint32_t fid; std::string_view name, target; uint32_t gid; };
struct Mknod { uint32_t dfid; std::string_view name; uint32_t mode, major, minor, gid; };
struct Rename { uint32_t fid, dfid; std::string_view name; };
struct Readlink { uint32_t fid; };
struct Getattr { uint32_t fid; uint64_t request_mask; };
struct Setattr {
    uint32_t fid, valid, mode, uid, gid;
    uint64_t size, atime_sec, atime_nsec, mtime_sec, mtime_nsec;
};
struct Xattrwalk { uint32_t fid, newfid; std::string_view name; };
struct Xattrcreate { uint32_t fid; std::string_view name; uint64_t size; uint32_t flags; };
struct Readdir { uint32_t fid; uint64_t offset; uint32_t count; };
struct Fsync { uint32_t fid, datasync; };
struct Lock { uint32_t fid; uint8_t type; uint32_t flags; uint64_t start, length; uint32_t proc_id; std::string_view client_id; };
struct Getlock { uint32_t fid; uint8_t type; uint64_t start, length; uint32_t proc_id; std::string_view client_id; };
struct Link { uint32_t dfid, fid; std::string_view name; };
struct Mkdir { uint32_t dfid; std::string_view name; uint32_t mode, gid; };
struct Renameat { uint32_t olddirfid; std::string_view oldname; uint32_t newdirfid; std::string_view newname; };
struct Unlinkat { uint32_t dirfid; std::string_view name; uint32_t flags; };

using Body = std::variant<Version, Auth, Attach, Flush, Walk, Read, Write, Clunk, Remove, Statfs, Lopen, Lcreate,
                          Symlink, Mknod, Rename, Readlink, Getattr, Setattr, Xattrwalk, Xattrcreate, Readdir,
                          Fsync, Lock, Getlock, Link, Mkdir, Renameat, Unlinkat>;

struct Request {
    Type type;
    uint16_t tag;
    Body body;  // strings and data point into the bytes decoded
};

// Why a message could not be decoded. With a header that could be read,
// `tag` is the tag to answer (Rlerror with `error`, an errno value); a
// message shorter than a header has no tag to answer.
struct DecodeError {
    std::optional<uint16_t> tag;
    int error;
    std::string reason;  // for the log: "size field 4096 but 23 bytes"
};

// Decodes one T-message occupying exactly `message` (its size field must
// equal message.size()). Walks with more than kMaxWalkNames names are
// refused here.
//
// `external_data` > 0: a Twrite whose data stays in the guest's buffers
// (the server writes it to the file from there, without a copy): `message`
// holds the fields up to and including count (kWriteFields bytes), and the
// size field and count must both account for `external_data` bytes more.
// Write::data is then empty. Any other type with external data is refused.
std::variant<Request, DecodeError> decode_request(std::span<const uint8_t> message, size_t external_data = 0);

// The 7-byte header of a reply of `type` to `tag`, with a size of 0 to be
// patched by finish_reply().
void begin_reply(WireWriter& out, Type type, uint16_t tag);
// Writes the final size into the header begin_reply() started.
void finish_reply(std::span<uint8_t> reply);
// A complete Rlerror, in place of what `reply` held.
void error_reply(uint16_t tag, int error, std::vector<uint8_t>& reply);

// "Twalk", "Rlerror"... or "unknown type".
std::string_view type_name(Type type);

}  // namespace minikvm::p9
