// libFuzzer target: the 9P2000.L server (vmm/backends/p9) on a small real
// tree -- files, a directory, links pointing out of the share, a FIFO --
// under a session the input drives. Each input is a series of messages
// (a framing byte, a 16-bit length, the bytes; the size field is made
// right when the framing byte says so, so most messages reach the
// handlers; another bit hands the reply room and a Twrite's data over in
// pieces, as the device does). Checked on every message: the reply fits
// the guest's buffers, its size field is its length (data put straight
// into the buffers included), its tag is the request's; after every
// input, nothing outside the share changed.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "vmm/backends/p9/p9_messages.h"
#include "vmm/backends/p9/p9_server.h"

using namespace minikvm;
namespace fs = std::filesystem;

namespace {

struct Sandbox {
    Sandbox() {
        char name[] = "/tmp/minikvm-fuzz-p9-XXXXXX";
        if (::mkdtemp(name) == nullptr) std::abort();
        base = name;
        share = base + "/share";
        std::ofstream(base + "/secret") << "outside";
        rebuild();
    }
    ~Sandbox() {
        std::error_code ignored;
        fs::remove_all(base, ignored);
    }
    void rebuild() {
        std::error_code ignored;
        fs::remove_all(share, ignored);
        fs::create_directories(share + "/dir/sub");
        std::ofstream(share + "/file") << "some file contents";
        std::ofstream(share + "/dir/inner") << "inner";
        (void)::symlink("/", (share + "/abs").c_str());
        (void)::symlink("../secret", (share + "/rel").c_str());
        (void)::symlink("..", (share + "/dir/up").c_str());
        (void)::mkfifo((share + "/fifo").c_str(), 0644);
    }
    // Nothing but the share and the secret beside it, the secret unchanged.
    bool outside_intact() const {
        size_t entries = 0;
        for (const auto& entry : fs::directory_iterator(base)) {
            (void)entry;
            ++entries;
        }
        std::ifstream in(base + "/secret");
        std::string text((std::istreambuf_iterator<char>(in)), {});
        return entries == 2 && text == "outside";
    }
    std::string base, share;
};

std::vector<uint8_t> message(p9::Type type, uint16_t tag, std::initializer_list<uint32_t> words,
                             std::initializer_list<std::string_view> strings = {}) {
    std::vector<uint8_t> out;
    p9::WireWriter w(out);
    p9::begin_reply(w, type, tag);
    for (uint32_t word : words) w.u32(word);
    for (std::string_view s : strings) w.string(s);
    p9::finish_reply(out);
    return out;
}

// `direct`: data bytes the server put into the guest's buffers, not `reply`.
void check_reply(std::span<const uint8_t> request, const std::vector<uint8_t>& reply, size_t limit,
                 size_t direct = 0) {
    if (reply.empty()) {
        if (direct != 0) std::abort();
        return;
    }
    if (reply.size() + direct > limit || reply.size() < p9::kHeaderSize) std::abort();
    if (direct != 0 && reply.size() != p9::kReadHeader) std::abort();  // the data follows Rread's head
    const uint32_t size = reply[0] | (reply[1] << 8) | (reply[2] << 16) | (uint32_t{reply[3]} << 24);
    if (size != reply.size() + direct) std::abort();
    if (request.size() >= p9::kHeaderSize && (reply[5] != request[5] || reply[6] != request[6])) std::abort();
}

// The guest's buffers as the device hands them over: the reply room past
// Rread's head, and a Twrite's data, each in pieces of up to 7 bytes.
void handle_with_buffers(p9::Server& server, std::span<const uint8_t> request, size_t limit) {
    static std::vector<uint8_t> room, reply;
    static std::vector<iovec> read_into, write_from;
    room.assign(limit, 0);
    read_into.clear();
    for (size_t at = p9::kReadHeader; at < limit; at += 7)
        read_into.push_back({room.data() + at, std::min<size_t>(7, limit - at)});
    std::span<const uint8_t> message = request;
    write_from.clear();
    if (request.size() > p9::kWriteFields && request[4] == static_cast<uint8_t>(p9::Type::Twrite)) {
        message = request.first(p9::kWriteFields);
        for (size_t at = p9::kWriteFields; at < request.size(); at += 7)
            write_from.push_back({const_cast<uint8_t*>(request.data() + at), std::min<size_t>(7, request.size() - at)});
    }
    const size_t direct = server.handle(message, limit, p9::DataBuffers{read_into, write_from}, reply);
    check_reply(request, reply, limit, direct);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Sandbox sandbox;
    static unsigned runs = 0;
    if (++runs % 256 == 0) sandbox.rebuild();
    if (size < 1) return 0;
    const bool read_only = data[0] & 1;
    const bool devices = data[0] & 2;  // opens FIFOs without blocking; never makes device nodes
    p9::Server server(p9::SharedTree::open(sandbox.share),
                      p9::ServerOptions{.read_only = read_only, .allow_devices = devices}, "fuzz");
    server.handle(message(p9::Type::Tversion, p9::kNoTag, {64 * 1024}, {"9P2000.L"}), 1 << 20);
    server.handle(message(p9::Type::Tattach, 1, {0, p9::kNoFid}, {"", ""}), 1 << 20);

    size_t at = 1;
    while (at + 3 <= size) {
        const uint8_t framing = data[at];
        const size_t length = std::min<size_t>(data[at + 1] | (data[at + 2] << 8), size - at - 3);
        at += 3;
        std::vector<uint8_t> request(data + at, data + at + length);
        at += length;
        if ((framing & 1) && request.size() >= 4)
            p9::patch_u32(request, 0, static_cast<uint32_t>(request.size()));
        // The guest's buffers: usually roomy, sometimes tight; in one piece
        // or in the device's pieces.
        const size_t limit = (framing & 2) ? framing : 1 << 17;
        if (framing & 4) handle_with_buffers(server, request, limit);
        else check_reply(request, server.handle(request, limit), limit);
    }
    if (!sandbox.outside_intact()) std::abort();
    return 0;
}
