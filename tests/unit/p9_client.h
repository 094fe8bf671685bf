#pragma once
// The client's half of 9P2000.L for tests: builds T-messages byte by byte
// (so tests can also build broken ones) and reads replies.

#include <catch2/catch.hpp>

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "vmm/backends/p9/p9_messages.h"
#include "vmm/backends/p9/p9_server.h"
#include "vmm/backends/p9/p9_wire.h"

namespace test_helpers {

namespace p9 = minikvm::p9;

// A T-message under construction; bytes() patches the size.
struct P9Message {
    explicit P9Message(p9::Type type, uint16_t tag = 1) : out(data) { p9::begin_reply(out, type, tag); }
    P9Message& u8(uint8_t v) { out.u8(v); return *this; }
    P9Message& u16(uint16_t v) { out.u16(v); return *this; }
    P9Message& u32(uint32_t v) { out.u32(v); return *this; }
    P9Message& u64(uint64_t v) { out.u64(v); return *this; }
    P9Message& str(std::string_view s) { out.string(s); return *this; }
    P9Message& raw(std::span<const uint8_t> b) { out.bytes(b); return *this; }
    std::vector<uint8_t> bytes() {
        p9::finish_reply(data);
        return data;
    }
    std::vector<uint8_t> data;
    p9::WireWriter out;
};

// A reply, read from after its header.
struct P9Reply {
    std::vector<uint8_t> bytes;
    p9::Type type() const { return static_cast<p9::Type>(bytes.at(4)); }
    uint16_t tag() const { return static_cast<uint16_t>(bytes.at(5) | (bytes.at(6) << 8)); }
    // The errno of an Rlerror, 0 for any other reply.
    int error() const {
        if (type() != p9::Type::Rlerror) return 0;
        p9::WireReader in(std::span<const uint8_t>(bytes).subspan(p9::kHeaderSize));
        return static_cast<int>(in.u32());
    }
    p9::WireReader body() const { return p9::WireReader(std::span<const uint8_t>(bytes).subspan(p9::kHeaderSize)); }

    // An Rreaddir's entries: names and offsets, in order. `complete` says
    // whether they filled the count exactly and were all readable.
    struct DirEntry {
        std::string name;
        uint64_t offset = 0;
    };
    std::vector<DirEntry> directory_entries(bool* complete = nullptr) const {
        p9::WireReader in = body();
        const uint32_t count = in.u32();
        std::vector<DirEntry> entries;
        size_t used = 0;
        while (used < count && !in.failed()) {
            in.bytes(p9::kQidSize);
            DirEntry entry;
            entry.offset = in.u64();
            in.u8();  // type
            entry.name = std::string(in.string());
            used += p9::kQidSize + 8 + 1 + 2 + entry.name.size();
            entries.push_back(std::move(entry));
        }
        if (complete) *complete = used == count && !in.failed();
        return entries;
    }
};

// A directory in /tmp, removed with everything in it at the end.
struct TempDirectory {
    TempDirectory() {
        char name[] = "/tmp/minikvm-p9-XXXXXX";
        REQUIRE(::mkdtemp(name) != nullptr);
        path = name;
    }
    ~TempDirectory() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
    std::string path;
};

// A server over a directory, with a session (Tversion + Tattach as fid 0).
struct P9Session {
    explicit P9Session(const std::string& root, p9::ServerOptions options = {}, bool attach = true)
        : server(p9::SharedTree::open(root), options, "p9-test") {
        P9Reply version = call(P9Message(p9::Type::Tversion, p9::kNoTag).u32(512 * 1024).str("9P2000.L").bytes());
        REQUIRE(version.type() == p9::Type::Rversion);
        if (attach) {
            P9Reply attached = call(P9Message(p9::Type::Tattach).u32(0).u32(p9::kNoFid).str("root").str("").u32(0).bytes());
            REQUIRE(attached.error() == 0);
        }
    }
    P9Reply call(const std::vector<uint8_t>& message, size_t limit = 1 << 20) {
        return P9Reply{server.handle(message, limit)};
    }
    // Twalk from `fid` to `newfid` through `names`; the reply.
    P9Reply walk(uint32_t fid, uint32_t newfid, const std::vector<std::string>& names) {
        P9Message m(p9::Type::Twalk);
        m.u32(fid).u32(newfid).u16(static_cast<uint16_t>(names.size()));
        for (const std::string& name : names) m.str(name);
        return call(m.bytes());
    }
    // How many qids an Rwalk holds (-errno for Rlerror).
    int walked(const P9Reply& reply) {
        if (reply.error()) return -reply.error();
        return reply.body().u16();
    }
    P9Reply lopen(uint32_t fid, uint32_t flags) { return call(P9Message(p9::Type::Tlopen).u32(fid).u32(flags).bytes()); }
    P9Reply read(uint32_t fid, uint64_t offset, uint32_t count) {
        return call(P9Message(p9::Type::Tread).u32(fid).u64(offset).u32(count).bytes());
    }
    std::string read_text(uint32_t fid) {
        P9Reply r = read(fid, 0, 4096);
        REQUIRE(r.error() == 0);
        p9::WireReader in = r.body();
        const uint32_t count = in.u32();
        auto data = in.bytes(count);
        return std::string(data.begin(), data.end());
    }
    P9Reply clunk(uint32_t fid) { return call(P9Message(p9::Type::Tclunk).u32(fid).bytes()); }

    p9::Server server;
};

}  // namespace test_helpers
