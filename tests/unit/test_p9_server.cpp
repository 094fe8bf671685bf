// The 9P2000.L server against a real directory: the protocol, and every
// confinement rule a guest could try to break.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "p9_client.h"

using namespace test_helpers;
namespace p9 = minikvm::p9;

namespace {

void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
    REQUIRE(out.good());
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// A share and, beside it (outside the share), a secret the guest must never read.
struct Tree {
    Tree() {
        share = base.path + "/share";
        REQUIRE(::mkdir(share.c_str(), 0755) == 0);
        write_file(base.path + "/secret", "outside");
        write_file(share + "/hello", "hello from the host");
        REQUIRE(::mkdir((share + "/dir").c_str(), 0755) == 0);
        write_file(share + "/dir/inner", "inner file");
    }
    TempDirectory base;
    std::string share;
};

}  // namespace

TEST_CASE("9p: version negotiation caps msize and refuses other dialects", "[p9]") {
    Tree tree;
    p9::Server server(p9::SharedTree::open(tree.share), {}, "t");
    P9Reply before{server.handle(P9Message(p9::Type::Tattach).u32(0).u32(p9::kNoFid).str("").str("").u32(0).bytes(), 4096)};
    CHECK(before.error() == EPROTO);  // nothing before Tversion

    P9Reply big{server.handle(P9Message(p9::Type::Tversion, p9::kNoTag).u32(64 << 20).str("9P2000.L").bytes(), 4096)};
    REQUIRE(big.type() == p9::Type::Rversion);
    p9::WireReader in = big.body();
    CHECK(in.u32() == p9::Server::kMaxMsize);
    CHECK(in.string() == "9P2000.L");
    CHECK(server.msize() == p9::Server::kMaxMsize);

    P9Reply other{server.handle(P9Message(p9::Type::Tversion, p9::kNoTag).u32(8192).str("9P2000.u").bytes(), 4096)};
    p9::WireReader in2 = other.body();
    in2.u32();
    CHECK(in2.string() == "unknown");
    CHECK(server.msize() == 0);
}

TEST_CASE("9p: walk, getattr, open and read a file; readdir lists the directory", "[p9]") {
    Tree tree;
    P9Session s(tree.share);
    REQUIRE(s.walked(s.walk(0, 1, {"hello"})) == 1);
    P9Reply attr = s.call(P9Message(p9::Type::Tgetattr).u32(1).u64(0x7ff).bytes());
    REQUIRE(attr.error() == 0);
    p9::WireReader a = attr.body();
    CHECK(a.u64() == 0x7ff);
    a.bytes(p9::kQidSize);
    CHECK(S_ISREG(a.u32()));
    a.u32();
    a.u32();
    a.u64();
    a.u64();
    CHECK(a.u64() == 19);  // size
    REQUIRE(s.lopen(1, 0).error() == 0);
    CHECK(s.read_text(1) == "hello from the host");
    CHECK(s.lopen(1, 0).error() == EBUSY);  // already open

    REQUIRE(s.walked(s.walk(0, 2, {})) == 0);  // clone the root
    REQUIRE(s.lopen(2, 0200000).error() == 0);
    P9Reply dir = s.call(P9Message(p9::Type::Treaddir).u32(2).u64(0).u32(8192).bytes());
    REQUIRE(dir.error() == 0);
    bool complete = false;
    std::vector<std::string> names;
    for (const P9Reply::DirEntry& entry : dir.directory_entries(&complete)) names.push_back(entry.name);
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{".", "..", "dir", "hello"});
    CHECK(complete);
}

TEST_CASE("9p: reads of one fid from several threads each get their own bytes", "[p9]") {
    // Reads of one fid run side by side (a shared lock); a Tgetattr on the
    // same fid, which serializes, runs among them.
    TempDirectory dir;
    constexpr uint32_t kWords = 1 << 18;  // a 1 MiB file whose word i is i
    {
        std::vector<uint32_t> words(kWords);
        for (uint32_t i = 0; i < kWords; ++i) words[i] = i;
        std::ofstream(dir.path + "/data", std::ios::binary)
            .write(reinterpret_cast<const char*>(words.data()), static_cast<std::streamsize>(kWords * 4));
    }
    P9Session s(dir.path);
    REQUIRE(s.walked(s.walk(0, 1, {"data"})) == 1);
    REQUIRE(s.lopen(1, 0).error() == 0);
    std::atomic<int> wrong{0};
    std::vector<std::thread> readers;
    for (uint32_t t = 0; t < 4; ++t) {
        readers.emplace_back([&, t] {
            for (uint32_t n = 0; n < 300; ++n) {
                const uint32_t word = (t * 7919 + n * 104729) % (kWords - 1024);
                const std::vector<uint8_t> request =
                    P9Message(p9::Type::Tread).u32(1).u64(uint64_t{word} * 4).u32(4096).bytes();
                const std::vector<uint8_t> reply = s.server.handle(request, 1 << 20);
                if (reply.size() != p9::kHeaderSize + 4 + 4096 || reply[4] != static_cast<uint8_t>(p9::Type::Rread)) {
                    ++wrong;
                    continue;
                }
                for (uint32_t i = 0; i < 1024; ++i) {
                    uint32_t value;
                    std::memcpy(&value, reply.data() + p9::kHeaderSize + 4 + 4 * i, 4);
                    if (value != word + i) {
                        ++wrong;
                        break;
                    }
                }
            }
        });
    }
    for (int n = 0; n < 300; ++n) {
        if (s.call(P9Message(p9::Type::Tgetattr).u32(1).u64(0x7ff).bytes()).error() != 0) ++wrong;
    }
    for (std::thread& reader : readers) reader.join();
    CHECK(wrong == 0);
}

TEST_CASE("9p: an open fid cannot be walked onto itself; a fid not yet open can", "[p9]") {
    Tree tree;
    P9Session s(tree.share);
    REQUIRE(s.walked(s.walk(0, 1, {"dir"})) == 1);
    CHECK(s.walked(s.walk(1, 1, {"inner"})) == 1);  // not open: moves to dir/inner
    REQUIRE(s.lopen(1, 0).error() == 0);
    CHECK(s.walk(1, 1, {}).error() == EBUSY);
    CHECK(s.walk(1, 1, {".."}).error() == EBUSY);
    CHECK(s.read_text(1) == "inner file");  // still the file it opened
    CHECK(s.walked(s.walk(1, 2, {})) == 0);  // a new fid from an open one is fine

    P9Reply created = s.call(P9Message(p9::Type::Tlcreate).u32(2).str("made").u32(2).u32(0644).u32(0).bytes());
    CHECK(created.error() == ENOTDIR);  // fid 2 is the file, not a directory
    REQUIRE(s.walked(s.walk(0, 3, {})) == 0);
    REQUIRE(s.call(P9Message(p9::Type::Tlcreate).u32(3).str("made").u32(2).u32(0644).u32(0).bytes()).error() == 0);
    CHECK(s.walk(3, 3, {}).error() == EBUSY);  // Tlcreate opened it too
}

TEST_CASE("9p: Treaddir continues from the offset of the last entry that fit", "[p9]") {
    Tree tree;
    for (int i = 0; i < 50; ++i) write_file(tree.share + "/dir/f" + std::to_string(i), "x");
    P9Session s(tree.share);
    REQUIRE(s.walked(s.walk(0, 1, {"dir"})) == 1);
    REQUIRE(s.lopen(1, 0).error() == 0);
    std::set<std::string> names;
    uint64_t offset = 0;
    for (int round = 0; round < 100; ++round) {
        P9Reply r = s.call(P9Message(p9::Type::Treaddir).u32(1).u64(offset).u32(100).bytes());
        REQUIRE(r.error() == 0);
        CHECK(r.body().u32() <= 100);
        bool complete = false;
        const std::vector<P9Reply::DirEntry> entries = r.directory_entries(&complete);
        CHECK(complete);
        if (entries.empty()) break;
        for (const P9Reply::DirEntry& entry : entries) {
            CHECK(names.insert(entry.name).second);  // never twice
            offset = entry.offset;
        }
    }
    CHECK(names.size() == 53);  // 50 + inner + . + ..
}

TEST_CASE("9p: one Treaddir with a large count returns a directory bigger than one getdents64 batch", "[p9]") {
    Tree tree;
    // 1000 entries of 40-byte names: about 56 KB of getdents64 records,
    // several batches of the server's buffer, and 56 KB of reply.
    const std::string stem(36, 'n');
    for (int i = 0; i < 1000; ++i) write_file(tree.share + "/dir/" + stem + std::to_string(1000 + i), "x");
    P9Session s(tree.share);
    REQUIRE(s.walked(s.walk(0, 1, {"dir"})) == 1);
    REQUIRE(s.lopen(1, 0).error() == 0);
    P9Reply r = s.call(P9Message(p9::Type::Treaddir).u32(1).u64(0).u32(400000).bytes());
    REQUIRE(r.error() == 0);
    bool complete = false;
    std::set<std::string> names;
    for (const P9Reply::DirEntry& entry : r.directory_entries(&complete)) CHECK(names.insert(entry.name).second);
    CHECK(complete);
    CHECK(names.size() == 1003);  // 1000 + inner + . + ..
}

TEST_CASE("9p: '..' never climbs above the root", "[p9][confinement]") {
    Tree tree;
    P9Session s(tree.share);
    P9Reply root = s.walk(0, 1, {"dir"});
    REQUIRE(s.walked(root) == 1);
    P9Reply up = s.walk(0, 2, {"..", "..", ".."});
    REQUIRE(s.walked(up) == 3);
    P9Reply self = s.walk(2, 3, {"hello"});  // still the share's root: its file is there
    CHECK(s.walked(self) == 1);
    CHECK(s.walked(s.walk(2, 4, {"secret"})) == -ENOENT);
    CHECK(s.walked(s.walk(0, 5, {"..", "secret"})) == 1);  // '..' stays at the root; 'secret' is not there
}

TEST_CASE("9p: symbolic links are never followed by the server", "[p9][confinement]") {
    Tree tree;
    REQUIRE(::symlink("/", (tree.share + "/abs").c_str()) == 0);
    REQUIRE(::symlink("..", (tree.share + "/up").c_str()) == 0);
    REQUIRE(::symlink("../secret", (tree.share + "/rel").c_str()) == 0);
    REQUIRE(::symlink("dir", (tree.share + "/inside").c_str()) == 0);
    P9Session s(tree.share);

    // A walk through a link stops at the link.
    CHECK(s.walked(s.walk(0, 1, {"abs", "etc"})) == 1);
    CHECK(s.walked(s.walk(0, 1, {"up", "secret"})) == 1);
    CHECK(s.walked(s.walk(0, 1, {"inside", "inner"})) == 1);  // even one that stays inside
    // The link itself can be walked to, stat'ed and read, not opened.
    REQUIRE(s.walked(s.walk(0, 2, {"rel"})) == 1);
    CHECK(s.lopen(2, 0).error() == ELOOP);
    P9Reply target = s.call(P9Message(p9::Type::Treadlink).u32(2).bytes());
    REQUIRE(target.error() == 0);
    CHECK(target.body().string() == "../secret");
    // Walking on from the link's fid fails too.
    CHECK(s.walked(s.walk(2, 3, {"x"})) < 0);
}

TEST_CASE("9p: a directory swapped for a link between walk and open is not followed", "[p9][confinement]") {
    Tree tree;
    P9Session s(tree.share);
    REQUIRE(s.walked(s.walk(0, 1, {"dir", "inner"})) == 2);
    REQUIRE(s.walked(s.walk(0, 2, {"dir"})) == 1);
    // The host (or another guest request) replaces dir with a link out.
    REQUIRE(::rename((tree.share + "/dir").c_str(), (tree.base.path + "/moved").c_str()) == 0);
    write_file(tree.base.path + "/inner", "outside too");
    REQUIRE(::symlink(tree.base.path.c_str(), (tree.share + "/dir").c_str()) == 0);
    CHECK(s.lopen(1, 0).error() != 0);
    CHECK(s.walked(s.walk(2, 3, {"inner"})) < 0);
    CHECK(s.call(P9Message(p9::Type::Tgetattr).u32(1).u64(0x7ff).bytes()).error() != 0);
}

TEST_CASE("9p: /proc magic links are refused", "[p9][confinement]") {
    P9Session s("/proc/self");
    for (const char* link : {"root", "cwd", "exe"}) {
        INFO(link);
        const int walked = s.walked(s.walk(0, 1, {link, "etc"}));
        CHECK(walked <= 1);
        if (walked == 1) {
            CHECK(s.lopen(1, 0).error() != 0);
            s.clunk(1);
        }
    }
    REQUIRE(s.walked(s.walk(0, 2, {"fd"})) == 1);
    REQUIRE(s.walked(s.walk(2, 3, {"0"})) == 1);  // a magic link: not opened through
    CHECK(s.lopen(3, 0).error() != 0);
}

TEST_CASE("9p: a hard link made on the host is that file; the guest cannot name an outside file", "[p9][confinement]") {
    Tree tree;
    P9Session s(tree.share);
    REQUIRE(s.walked(s.walk(0, 1, {"dir"})) == 1);
    REQUIRE(s.walked(s.walk(0, 2, {"hello"})) == 1);
    // Names are single components: no way to say "../secret".
    CHECK(s.call(P9Message(p9::Type::Tlink).u32(1).u32(2).str("../x").bytes()).error() == EINVAL);
    CHECK(s.call(P9Message(p9::Type::Tlink).u32(1).u32(2).str("a/b").bytes()).error() == EINVAL);
    CHECK(s.call(P9Message(p9::Type::Tlink).u32(1).u32(2).str("..").bytes()).error() == EINVAL);
    REQUIRE(s.call(P9Message(p9::Type::Tlink).u32(1).u32(2).str("hello2").bytes()).error() == 0);
    CHECK(read_file(tree.share + "/dir/hello2") == "hello from the host");
    // Names with NUL or '/' in Twalk are refused rather than cut.
    CHECK(s.walked(s.walk(0, 3, {std::string("hello\0x", 7)})) == -ENOENT);
    CHECK(s.walked(s.walk(0, 3, {"dir/inner"})) == -ENOENT);
}

TEST_CASE("9p: create, write, rename, unlink; fids follow renames", "[p9]") {
    Tree tree;
    P9Session s(tree.share);
    REQUIRE(s.walked(s.walk(0, 1, {"dir"})) == 1);
    P9Reply created = s.call(P9Message(p9::Type::Tlcreate).u32(1).str("new").u32(2).u32(04755).u32(0).bytes());
    REQUIRE(created.error() == 0);
    std::vector<uint8_t> data{'a', 'b', 'c'};
    P9Reply wrote = s.call(P9Message(p9::Type::Twrite).u32(1).u64(0).u32(3).raw(data).bytes());
    REQUIRE(wrote.error() == 0);
    CHECK(wrote.body().u32() == 3);
    struct stat st {};
    REQUIRE(::stat((tree.share + "/dir/new").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0755);  // no set-user-ID from the guest
    CHECK(st.st_uid == ::geteuid());

    REQUIRE(s.walked(s.walk(0, 2, {"dir"})) == 1);
    REQUIRE(s.walked(s.walk(0, 3, {})) == 0);
    CHECK(s.call(P9Message(p9::Type::Trenameat).u32(3).str("dir").u32(3).str("renamed").bytes()).error() == 0);
    // fid 2 followed its directory.
    CHECK(s.walked(s.walk(2, 4, {"new"})) == 1);
    CHECK(s.call(P9Message(p9::Type::Tunlinkat).u32(2).str("new").u32(0).bytes()).error() == 0);
    CHECK(access((tree.share + "/renamed/new").c_str(), F_OK) != 0);
    CHECK(s.call(P9Message(p9::Type::Tmkdir).u32(2).str("sub").u32(02775).u32(0).bytes()).error() == 0);
    REQUIRE(::stat((tree.share + "/renamed/sub").c_str(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK(s.call(P9Message(p9::Type::Tunlinkat).u32(2).str("sub").u32(0x200).bytes()).error() == 0);
    CHECK(s.call(P9Message(p9::Type::Tunlinkat).u32(2).str("sub").u32(0x1).bytes()).error() == EINVAL);
}

TEST_CASE("9p: setattr drops set-ID bits, truncates, sets times", "[p9]") {
    Tree tree;
    P9Session s(tree.share);
    REQUIRE(s.walked(s.walk(0, 1, {"hello"})) == 1);
    auto setattr = [&](uint32_t valid, uint32_t mode, uint64_t size, uint64_t mtime) {
        return s.call(P9Message(p9::Type::Tsetattr).u32(1).u32(valid).u32(mode).u32(0).u32(0).u64(size)
                          .u64(0).u64(0).u64(mtime).u64(0).bytes());
    };
    CHECK(setattr(0x1, 06755, 0, 0).error() == 0);
    struct stat st {};
    REQUIRE(::stat((tree.share + "/hello").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0755);
    CHECK(setattr(0x8, 0, 5, 0).error() == 0);
    CHECK(read_file(tree.share + "/hello") == "hello");
    CHECK(setattr(0x20 | 0x100, 0, 0, 1000000).error() == 0);
    REQUIRE(::stat((tree.share + "/hello").c_str(), &st) == 0);
    CHECK(st.st_mtim.tv_sec == 1000000);
}

TEST_CASE("9p: a read-only share refuses every change", "[p9][confinement]") {
    Tree tree;
    P9Session s(tree.share, p9::ServerOptions{.read_only = true});
    REQUIRE(s.walked(s.walk(0, 1, {"hello"})) == 1);
    REQUIRE(s.walked(s.walk(0, 2, {"dir"})) == 1);
    CHECK(s.lopen(1, 1).error() == EROFS);
    CHECK(s.lopen(1, 2).error() == EROFS);
    CHECK(s.lopen(1, 01000).error() == EROFS);  // O_TRUNC
    CHECK(s.call(P9Message(p9::Type::Tlcreate).u32(2).str("x").u32(2).u32(0644).u32(0).bytes()).error() == EROFS);
    CHECK(s.call(P9Message(p9::Type::Tmkdir).u32(2).str("x").u32(0755).u32(0).bytes()).error() == EROFS);
    CHECK(s.call(P9Message(p9::Type::Tsymlink).u32(2).str("x").str("y").u32(0).bytes()).error() == EROFS);
    CHECK(s.call(P9Message(p9::Type::Tunlinkat).u32(0).str("hello").u32(0).bytes()).error() == EROFS);
    CHECK(s.call(P9Message(p9::Type::Trenameat).u32(0).str("hello").u32(0).str("h").bytes()).error() == EROFS);
    CHECK(s.call(P9Message(p9::Type::Tsetattr).u32(1).u32(0x8).u32(0).u32(0).u32(0).u64(0).u64(0).u64(0).u64(0)
                     .u64(0).bytes()).error() == EROFS);
    CHECK(s.call(P9Message(p9::Type::Txattrcreate).u32(1).str("user.x").u64(1).u32(0).bytes()).error() == EROFS);
    CHECK(s.call(P9Message(p9::Type::Tremove).u32(1).bytes()).error() == EROFS);
    CHECK(read_file(tree.share + "/hello") == "hello from the host");
    REQUIRE(s.walked(s.walk(0, 3, {"hello"})) == 1);
    REQUIRE(s.lopen(3, 0).error() == 0);
    CHECK(s.read_text(3) == "hello from the host");
}

TEST_CASE("9p: device nodes, FIFOs and sockets are refused unless allowed", "[p9][confinement]") {
    Tree tree;
    REQUIRE(::mkfifo((tree.share + "/fifo").c_str(), 0644) == 0);
    {
        P9Session s(tree.share);
        REQUIRE(s.walked(s.walk(0, 1, {"fifo"})) == 1);
        CHECK(s.lopen(1, 0).error() == EPERM);
        CHECK(s.call(P9Message(p9::Type::Tmknod).u32(0).str("null").u32(S_IFCHR | 0666).u32(1).u32(3).u32(0).bytes())
                  .error() == EPERM);
        CHECK(s.call(P9Message(p9::Type::Tmknod).u32(0).str("f2").u32(S_IFIFO | 0666).u32(0).u32(0).u32(0).bytes())
                  .error() == EPERM);
    }
    P9Session allowed(tree.share, p9::ServerOptions{.allow_devices = true});
    REQUIRE(allowed.walked(allowed.walk(0, 1, {"fifo"})) == 1);
    CHECK(allowed.lopen(1, 0).error() == 0);  // and it does not block
    CHECK(allowed.call(P9Message(p9::Type::Tmknod).u32(0).str("f2").u32(S_IFIFO | 0644).u32(0).u32(0).u32(0).bytes())
              .error() == 0);
    // A device node could name the host's disk: never made.
    CHECK(allowed.call(P9Message(p9::Type::Tmknod).u32(0).str("sda").u32(S_IFBLK | 0600).u32(8).u32(0).u32(0).bytes())
              .error() == EPERM);
    struct stat st {};
    CHECK(::lstat((tree.share + "/sda").c_str(), &st) != 0);
}

TEST_CASE("9p: malformed messages get an error reply, never a crash", "[p9][parser]") {
    Tree tree;
    P9Session s(tree.share);
    // Shorter than a header: nothing to answer.
    CHECK(s.server.handle(std::vector<uint8_t>{1, 2, 3}, 4096).empty());
    // Size field disagreeing with the message.
    std::vector<uint8_t> m = P9Message(p9::Type::Tclunk, 7).u32(0).bytes();
    m[0] = 200;
    P9Reply sized = s.call(m);
    CHECK(sized.error() == EINVAL);
    CHECK(sized.tag() == 7);
    // A string running past the end.
    std::vector<uint8_t> walk = P9Message(p9::Type::Twalk).u32(0).u32(1).u16(1).u16(500).str("x").bytes();
    CHECK(s.call(walk).error() == EINVAL);
    // Bytes after the last field.
    CHECK(s.call(P9Message(p9::Type::Tclunk).u32(99).u32(0).bytes()).error() == EINVAL);
    // More than 16 names.
    CHECK(s.walked(s.walk(0, 1, std::vector<std::string>(17, "dir"))) == -EINVAL);
    CHECK(s.walked(s.walk(0, 1, std::vector<std::string>(16, ".."))) == 16);
    // Unknown and R-message types.
    CHECK(s.call(P9Message(static_cast<p9::Type>(99)).bytes()).error() == EOPNOTSUPP);
    CHECK(s.call(P9Message(p9::Type::Rread).u32(0).bytes()).error() == EOPNOTSUPP);
    // Unknown fids, fid reuse, NOFID as a new fid.
    CHECK(s.call(P9Message(p9::Type::Tgetattr).u32(1234).u64(0x7ff).bytes()).error() == EBADF);
    CHECK(s.clunk(1234).error() == EBADF);
    CHECK(s.call(P9Message(p9::Type::Tattach).u32(0).u32(p9::kNoFid).str("").str("").u32(0).bytes()).error() == EEXIST);
    CHECK(s.walked(s.walk(0, 1, {"dir"})) == -EEXIST);  // fid 1 exists from the 16-name walk
    CHECK(s.walked(s.walk(0, p9::kNoFid, {"dir"})) == -EINVAL);
    // A huge read count is cut to the msize.
    REQUIRE(s.walked(s.walk(0, 2, {"hello"})) == 1);
    REQUIRE(s.lopen(2, 0).error() == 0);
    P9Reply big = s.read(2, 0, 0xffffffff);
    REQUIRE(big.error() == 0);
    CHECK(big.body().u32() == 19);
    // A reply that does not fit the guest's buffers.
    P9Reply tight = s.call(P9Message(p9::Type::Tgetattr).u32(2).u64(0x7ff).bytes(), 20);
    CHECK(tight.error() == ENOBUFS);
    CHECK(s.server.handle(P9Message(p9::Type::Tgetattr).u32(2).u64(0x7ff).bytes(), 5).empty());
    // Reads at the end and far past it.
    CHECK(s.read(2, 1ULL << 62, 10).body().u32() == 0);
    CHECK(s.read(2, ~0ULL, 10).error() == EINVAL);
    CHECK(s.server.stats().malformed >= 6);
}

TEST_CASE("9p: Tread and Twrite move data straight between the file and the guest's buffers", "[p9]") {
    Tree tree;
    P9Session s(tree.share);
    std::string text;
    for (int i = 0; i < 500; ++i) text += static_cast<char>('a' + i % 26);
    write_file(tree.share + "/data", text);
    REQUIRE(s.walked(s.walk(0, 1, {"data"})) == 1);
    REQUIRE(s.lopen(1, 2).error() == 0);

    // The reply room after Rread's head, in three pieces; the read asks for
    // less than they hold, at an offset.
    std::vector<uint8_t> a(7), b(100), c(1000, 0xee);
    std::vector<iovec> into{{a.data(), a.size()}, {b.data(), b.size()}, {c.data(), c.size()}};
    std::vector<uint8_t> reply;
    const auto read = P9Message(p9::Type::Tread, 9).u32(1).u64(3).u32(300).bytes();
    CHECK(s.server.handle(read, 4096, p9::DataBuffers{.read_into = into}, reply) == 300);
    P9Reply head{reply};
    REQUIRE(reply.size() == p9::kReadHeader);
    CHECK(head.type() == p9::Type::Rread);
    CHECK(head.tag() == 9);
    CHECK(head.body().u32() == 300);
    CHECK(p9::WireReader(reply).u32() == p9::kReadHeader + 300);  // the size counts the data
    std::string got(a.begin(), a.end());
    got.append(b.begin(), b.end());
    got.append(c.begin(), c.begin() + 193);
    CHECK(got == text.substr(3, 300));
    CHECK(c[193] == 0xee);  // nothing past the count

    // An error: no data, the Rlerror in `reply`.
    const auto bad = P9Message(p9::Type::Tread, 10).u32(77).u64(0).u32(10).bytes();
    CHECK(s.server.handle(bad, 4096, p9::DataBuffers{.read_into = into}, reply) == 0);
    CHECK(P9Reply{reply}.error() == EBADF);

    // Twrite whose data stayed in the guest's buffers: 1500 one-byte pieces
    // (more than IOV_MAX, so pwritev is called again where it stopped).
    std::string written(1500, ' ');
    for (size_t i = 0; i < written.size(); ++i) written[i] = static_cast<char>('A' + i % 23);
    std::vector<iovec> from;
    for (char& byte : written) from.push_back({&byte, 1});
    const auto head_only = P9Message(p9::Type::Twrite, 11).u32(1).u64(10).u32(1500).bytes();
    std::vector<uint8_t> fields = head_only;
    p9::patch_u32(fields, 0, static_cast<uint32_t>(fields.size() + written.size()));
    REQUIRE(fields.size() == p9::kWriteFields);
    CHECK(s.server.handle(fields, 4096, p9::DataBuffers{.write_from = from}, reply) == 0);
    REQUIRE(P9Reply{reply}.error() == 0);
    CHECK(P9Reply{reply}.body().u32() == 1500);
    CHECK(read_file(tree.share + "/data") == text.substr(0, 10) + written);

    // The size field and count must account for the data outside the message.
    CHECK(s.server.handle(head_only, 4096, p9::DataBuffers{.write_from = from}, reply) == 0);
    CHECK(P9Reply{reply}.error() == EINVAL);
    std::vector<uint8_t> short_count = P9Message(p9::Type::Twrite, 12).u32(1).u64(0).u32(1499).bytes();
    p9::patch_u32(short_count, 0, static_cast<uint32_t>(short_count.size() + written.size()));
    CHECK(s.server.handle(short_count, 4096, p9::DataBuffers{.write_from = from}, reply) == 0);
    CHECK(P9Reply{reply}.error() == EINVAL);
    // Only a Twrite's data may be outside its message.
    std::vector<uint8_t> getattr = P9Message(p9::Type::Tgetattr, 13).u32(1).u64(0x7ff).bytes();
    p9::patch_u32(getattr, 0, static_cast<uint32_t>(getattr.size() + 1));
    CHECK(s.server.handle(getattr, 4096, p9::DataBuffers{.write_from = std::span(from).first(1)}, reply) == 0);
    CHECK(P9Reply{reply}.error() == EINVAL);
    CHECK(read_file(tree.share + "/data") == text.substr(0, 10) + written);
}

TEST_CASE("9p: extended attributes in the user namespace", "[p9]") {
    Tree tree;
    if (::setxattr((tree.share + "/hello").c_str(), "user.probe", "1", 1, 0) != 0) {
        WARN("the temporary directory's filesystem has no user xattrs: " << std::strerror(errno));
        return;
    }
    P9Session s(tree.share);
    REQUIRE(s.walked(s.walk(0, 1, {"hello"})) == 1);
    REQUIRE(s.call(P9Message(p9::Type::Txattrcreate).u32(1).str("user.color").u64(4).u32(0).bytes()).error() == 0);
    std::vector<uint8_t> value{'b', 'l', 'u', 'e'};
    REQUIRE(s.call(P9Message(p9::Type::Twrite).u32(1).u64(0).u32(4).raw(value).bytes()).error() == 0);
    REQUIRE(s.clunk(1).error() == 0);
    char got[16] = {};
    REQUIRE(::getxattr((tree.share + "/hello").c_str(), "user.color", got, sizeof got) == 4);
    CHECK(std::string(got) == "blue");

    REQUIRE(s.walked(s.walk(0, 2, {"hello"})) == 1);
    P9Reply walked = s.call(P9Message(p9::Type::Txattrwalk).u32(2).u32(3).str("user.color").bytes());
    REQUIRE(walked.error() == 0);
    CHECK(walked.body().u64() == 4);
    CHECK(s.read_text(3) == "blue");
    // Namespaces the guest may not write.
    CHECK(s.call(P9Message(p9::Type::Txattrcreate).u32(2).str("trusted.x").u64(1).u32(0).bytes()).error() ==
          EOPNOTSUPP);
    CHECK(s.call(P9Message(p9::Type::Txattrcreate).u32(2).str("security.capability").u64(1).u32(0).bytes()).error() ==
          EOPNOTSUPP);
    // More than announced, or out of order.
    REQUIRE(s.call(P9Message(p9::Type::Txattrcreate).u32(2).str("user.y").u64(2).u32(0).bytes()).error() == 0);
    CHECK(s.call(P9Message(p9::Type::Twrite).u32(2).u64(0).u32(4).raw(value).bytes()).error() == EINVAL);
    CHECK(s.call(P9Message(p9::Type::Twrite).u32(2).u64(1).u32(1).raw(std::span(value).first(1)).bytes()).error() ==
          EINVAL);
    CHECK(s.clunk(2).error() == EINVAL);  // the value never came
}

TEST_CASE("9p: locks are per fid and never block", "[p9]") {
    Tree tree;
    P9Session s(tree.share);
    REQUIRE(s.walked(s.walk(0, 1, {"hello"})) == 1);
    REQUIRE(s.walked(s.walk(0, 2, {"hello"})) == 1);
    REQUIRE(s.lopen(1, 2).error() == 0);
    REQUIRE(s.lopen(2, 2).error() == 0);
    auto lock = [&](uint32_t fid, uint8_t type) {
        P9Reply r = s.call(P9Message(p9::Type::Tlock).u32(fid).u8(type).u32(1).u64(0).u64(0).u32(42).str("guest").bytes());
        REQUIRE(r.error() == 0);
        return r.body().u8();
    };
    CHECK(lock(1, 1) == 0);  // write lock: success
    CHECK(lock(2, 1) == 1);  // the other fid: blocked, at once
    P9Reply get = s.call(P9Message(p9::Type::Tgetlock).u32(2).u8(1).u64(0).u64(0).u32(43).str("guest").bytes());
    REQUIRE(get.error() == 0);
    CHECK(get.body().u8() == 1);  // the conflicting write lock
    CHECK(lock(1, 2) == 0);  // unlock
    CHECK(lock(2, 1) == 0);

    // Both refuse the same way: a fid not open, an unknown type, a range past off_t.
    REQUIRE(s.walked(s.walk(0, 3, {"hello"})) == 1);
    for (p9::Type type : {p9::Type::Tlock, p9::Type::Tgetlock}) {
        auto request = [&](uint32_t fid, uint8_t lock_type, uint64_t start) {
            P9Message m(type);
            m.u32(fid).u8(lock_type);
            if (type == p9::Type::Tlock) m.u32(0);  // flags
            return s.call(m.u64(start).u64(0).u32(42).str("guest").bytes()).error();
        };
        CHECK(request(3, 1, 0) == EBADF);
        CHECK(request(9, 1, 0) == EBADF);
        CHECK(request(1, 3, 0) == EINVAL);
        CHECK(request(1, 1, uint64_t{1} << 63) == EINVAL);
        CHECK(request(1, 0, 0) == 0);
    }
}
