#include "vmm/backends/p9/p9_messages.h"

#include <cerrno>

#include <fmt/format.h>

namespace minikvm::p9 {

namespace {

// Decodes the body of `type`; nullopt for a type this server does not serve.
// `external`: a Twrite's data is not in the message (decode_request's external_data).
std::optional<Body> decode_body(Type type, WireReader& in, bool external) {
    switch (type) {
        case Type::Tversion: { Version m; m.msize = in.u32(); m.version = in.string(); return m; }
        case Type::Tauth: {
            Auth m; m.afid = in.u32(); m.uname = in.string(); m.aname = in.string(); m.n_uname = in.u32(); return m;
        }
        case Type::Tattach: {
            Attach m; m.fid = in.u32(); m.afid = in.u32(); m.uname = in.string(); m.aname = in.string();
            m.n_uname = in.u32(); return m;
        }
        case Type::Tflush: return Flush{in.u16()};
        case Type::Twalk: {
            Walk m; m.fid = in.u32(); m.newfid = in.u32();
            const uint16_t count = in.u16();
            if (count > kMaxWalkNames) return std::nullopt;  // told apart by the caller
            for (uint16_t i = 0; i < count; ++i) m.names.push_back(in.string());
            return m;
        }
        case Type::Tread: { Read m; m.fid = in.u32(); m.offset = in.u64(); m.count = in.u32(); return m; }
        case Type::Twrite: {
            Write m; m.fid = in.u32(); m.offset = in.u64(); m.count = in.u32();
            if (!external) m.data = in.bytes(m.count);
            return m;
        }
        case Type::Tclunk: return Clunk{in.u32()};
        case Type::Tremove: return Remove{in.u32()};
        case Type::Tstatfs: return Statfs{in.u32()};
        case Type::Tlopen: { Lopen m; m.fid = in.u32(); m.flags = in.u32(); return m; }
        case Type::Tlcreate: {
            Lcreate m; m.fid = in.u32(); m.name = in.string(); m.flags = in.u32(); m.mode = in.u32(); m.gid = in.u32();
            return m;
        }
        case Type::Tsymlink: {
            Symlink m; m.fid = in.u32(); m.name = in.string(); m.target = in.string(); m.gid = in.u32(); return m;
        }
        case Type::Tmknod: {
            Mknod m; m.dfid = in.u32(); m.name = in.string(); m.mode = in.u32(); m.major = in.u32();
            m.minor = in.u32(); m.gid = in.u32(); return m;
        }
        case Type::Trename: { Rename m; m.fid = in.u32(); m.dfid = in.u32(); m.name = in.string(); return m; }
        case Type::Treadlink: return Readlink{in.u32()};
        case Type::Tgetattr: { Getattr m; m.fid = in.u32(); m.request_mask = in.u64(); return m; }
        case Type::Tsetattr: {
            Setattr m; m.fid = in.u32(); m.valid = in.u32(); m.mode = in.u32(); m.uid = in.u32(); m.gid = in.u32();
            m.size = in.u64(); m.atime_sec = in.u64(); m.atime_nsec = in.u64(); m.mtime_sec = in.u64();
            m.mtime_nsec = in.u64(); return m;
        }
        case Type::Txattrwalk: { Xattrwalk m; m.fid = in.u32(); m.newfid = in.u32(); m.name = in.string(); return m; }
        case Type::Txattrcreate: {
            Xattrcreate m; m.fid = in.u32(); m.name = in.string(); m.size = in.u64(); m.flags = in.u32(); return m;
        }
        case Type::Treaddir: { Readdir m; m.fid = in.u32(); m.offset = in.u64(); m.count = in.u32(); return m; }
        case Type::Tfsync: { Fsync m; m.fid = in.u32(); m.datasync = in.u32(); return m; }
        case Type::Tlock: {
            Lock m; m.fid = in.u32(); m.type = in.u8(); m.flags = in.u32(); m.start = in.u64(); m.length = in.u64();
            m.proc_id = in.u32(); m.client_id = in.string(); return m;
        }
        case Type::Tgetlock: {
            Getlock m; m.fid = in.u32(); m.type = in.u8(); m.start = in.u64(); m.length = in.u64();
            m.proc_id = in.u32(); m.client_id = in.string(); return m;
        }
        case Type::Tlink: { Link m; m.dfid = in.u32(); m.fid = in.u32(); m.name = in.string(); return m; }
        case Type::Tmkdir: { Mkdir m; m.dfid = in.u32(); m.name = in.string(); m.mode = in.u32(); m.gid = in.u32(); return m; }
        case Type::Trenameat: {
            Renameat m; m.olddirfid = in.u32(); m.oldname = in.string(); m.newdirfid = in.u32();
            m.newname = in.string(); return m;
        }
        case Type::Tunlinkat: { Unlinkat m; m.dirfid = in.u32(); m.name = in.string(); m.flags = in.u32(); return m; }
        default: return std::nullopt;
    }
}

}  // namespace

std::variant<Request, DecodeError> decode_request(std::span<const uint8_t> message, size_t external_data) {
    if (message.size() < kHeaderSize)
        return DecodeError{std::nullopt, EINVAL, fmt::format("{} bytes: shorter than a 9P header", message.size())};
    WireReader in(message);
    const uint32_t size = in.u32();
    const auto type = static_cast<Type>(in.u8());
    const uint16_t tag = in.u16();
    const uint64_t total = uint64_t{message.size()} + external_data;
    if (size != total)
        return DecodeError{tag, EINVAL, fmt::format("{}: size field {} but the message has {} bytes",
                                                    type_name(type), size, total)};
    if (external_data != 0 && (type != Type::Twrite || message.size() != kWriteFields))
        return DecodeError{tag, EINVAL, fmt::format("{}: {} bytes of data outside a {}-byte message",
                                                    type_name(type), external_data, message.size())};
    if (type == Type::Twalk && message.size() >= kHeaderSize + 10) {
        WireReader peek(message.subspan(kHeaderSize + 8, 2));
        if (const uint16_t names = peek.u16(); names > kMaxWalkNames)
            return DecodeError{tag, EINVAL,
                               fmt::format("Twalk of {} names: at most {} are allowed", names, kMaxWalkNames)};
    }
    std::optional<Body> body = decode_body(type, in, external_data != 0);
    if (!body) return DecodeError{tag, EOPNOTSUPP, fmt::format("{}: not a 9P2000.L request this server serves",
                                                               type_name(type))};
    if (in.failed())
        return DecodeError{tag, EINVAL, fmt::format("{}: a field runs past the end of the message", type_name(type))};
    if (external_data != 0 && std::get<Write>(*body).count != external_data)
        return DecodeError{tag, EINVAL, fmt::format("Twrite: count {} but {} bytes of data",
                                                    std::get<Write>(*body).count, external_data)};
    if (in.remaining() != 0)
        return DecodeError{tag, EINVAL, fmt::format("{}: {} bytes after the last field", type_name(type),
                                                    in.remaining())};
    return Request{type, tag, std::move(*body)};
}

void begin_reply(WireWriter& out, Type type, uint16_t tag) {
    out.u32(0);
    out.u8(static_cast<uint8_t>(type));
    out.u16(tag);
}

void finish_reply(std::span<uint8_t> reply) { patch_u32(reply, 0, static_cast<uint32_t>(reply.size())); }

void error_reply(uint16_t tag, int error, std::vector<uint8_t>& reply) {
    reply.clear();
    WireWriter out(reply);
    begin_reply(out, Type::Rlerror, tag);
    out.u32(static_cast<uint32_t>(error));
    finish_reply(reply);
}

std::string_view type_name(Type type) {
    switch (type) {
        case Type::Tlerror: return "Tlerror";
        case Type::Rlerror: return "Rlerror";
        case Type::Tstatfs: return "Tstatfs";
        case Type::Rstatfs: return "Rstatfs";
        case Type::Tlopen: return "Tlopen";
        case Type::Rlopen: return "Rlopen";
        case Type::Tlcreate: return "Tlcreate";
        case Type::Rlcreate: return "Rlcreate";
        case Type::Tsymlink: return "Tsymlink";
        case Type::Rsymlink: return "Rsymlink";
        case Type::Tmknod: return "Tmknod";
        case Type::Rmknod: return "Rmknod";
        case Type::Trename: return "Trename";
        case Type::Rrename: return "Rrename";
        case Type::Treadlink: return "Treadlink";
        case Type::Rreadlink: return "Rreadlink";
        case Type::Tgetattr: return "Tgetattr";
        case Type::Rgetattr: return "Rgetattr";
        case Type::Tsetattr: return "Tsetattr";
        case Type::Rsetattr: return "Rsetattr";
        case Type::Txattrwalk: return "Txattrwalk";
        case Type::Rxattrwalk: return "Rxattrwalk";
        case Type::Txattrcreate: return "Txattrcreate";
        case Type::Rxattrcreate: return "Rxattrcreate";
        case Type::Treaddir: return "Treaddir";
        case Type::Rreaddir: return "Rreaddir";
        case Type::Tfsync: return "Tfsync";
        case Type::Rfsync: return "Rfsync";
        case Type::Tlock: return "Tlock";
        case Type::Rlock: return "Rlock";
        case Type::Tgetlock: return "Tgetlock";
        case Type::Rgetlock: return "Rgetlock";
        case Type::Tlink: return "Tlink";
        case Type::Rlink: return "Rlink";
        case Type::Tmkdir: return "Tmkdir";
        case Type::Rmkdir: return "Rmkdir";
        case Type::Trenameat: return "Trenameat";
        case Type::Rrenameat: return "Rrenameat";
        case Type::Tunlinkat: return "Tunlinkat";
        case Type::Runlinkat: return "Runlinkat";
        case Type::Tversion: return "Tversion";
        case Type::Rversion: return "Rversion";
        case Type::Tauth: return "Tauth";
        case Type::Rauth: return "Rauth";
        case Type::Tattach: return "Tattach";
        case Type::Rattach: return "Rattach";
        case Type::Tflush: return "Tflush";
        case Type::Rflush: return "Rflush";
        case Type::Twalk: return "Twalk";
        case Type::Rwalk: return "Rwalk";
        case Type::Tread: return "Tread";
        case Type::Rread: return "Rread";
        case Type::Twrite: return "Twrite";
        case Type::Rwrite: return "Rwrite";
        case Type::Tclunk: return "Tclunk";
        case Type::Rclunk: return "Rclunk";
        case Type::Tremove: return "Tremove";
        case Type::Rremove: return "Rremove";
    }
    return "unknown type";
}

}  // namespace minikvm::p9
