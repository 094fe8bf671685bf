// libFuzzer target: net::complete_offloads (vmm/backends/net/
// software_offloads.h) on any virtio-net header and frame a guest can send
// to --net user. The input's first 10 bytes are the header, the rest the
// frame. Checked besides memory safety: a refused frame hands nothing
// over; a TSO frame comes out as segments whose payloads add up to the
// input's, none longer than gso_size, each with a valid TCP checksum (and
// IPv4 header checksum), summed here independently of the code under test.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "vmm/backends/net/net_header.h"
#include "vmm/backends/net/software_offloads.h"

using namespace minikvm;

namespace {

uint16_t be16(std::span<const uint8_t> b, size_t at) { return static_cast<uint16_t>((b[at] << 8) | b[at + 1]); }

uint32_t sum16(std::span<const uint8_t> b, uint32_t sum = 0) {
    for (size_t i = 0; i < b.size(); i += 2) sum += i + 1 < b.size() ? be16(b, i) : static_cast<uint32_t>(b[i] << 8);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < net::kHeaderSize) return 0;
    const net::Header header = net::decode(std::span(data, net::kHeaderSize));
    // Our own copy, as the backend passes it (a partial checksum is stored in place).
    std::vector<uint8_t> copy(data + net::kHeaderSize, data + size);
    const std::span<uint8_t> frame(copy);
    static std::vector<uint8_t> scratch;  // reused across inputs, as the backend does
    const uint8_t type = header.gso_type & static_cast<uint8_t>(~net::kGsoEcn);
    const bool tso = type == net::kGsoTcpV4 || type == net::kGsoTcpV6;

    size_t frames = 0, payload_out = 0, headers = 0;
    const std::string problem = net::complete_offloads(header, frame, scratch, [&](std::span<const uint8_t> out) {
        ++frames;
        if (out.size() < 14) std::abort();
        if (!tso) {
            if (out.size() != frame.size()) std::abort();
            return;
        }
        const size_t l3 = be16(out, 12) == 0x8100 ? 18 : 14;
        const bool v6 = type == net::kGsoTcpV6;
        const size_t l4 = v6 ? l3 + 40 : l3 + (out[l3] & 0x0fU) * 4;
        const size_t payload = l4 + (out[l4 + 12] >> 4) * 4U;
        if (headers == 0) headers = payload;
        if (payload != headers || out.size() - payload > header.gso_size) std::abort();
        payload_out += out.size() - payload;
        const auto tcp_length = static_cast<uint32_t>(out.size() - l4);
        uint32_t pseudo = 6 + (tcp_length >> 16) + (tcp_length & 0xffff);
        if (v6) {
            pseudo = sum16(out.subspan(l3 + 8, 32), pseudo);
        } else {
            pseudo = sum16(out.subspan(l3 + 12, 8), pseudo);
            if (sum16(out.subspan(l3, l4 - l3)) != 0xffff) std::abort();
            if (be16(out, l3 + 2) != out.size() - l3) std::abort();
        }
        if (sum16(out.subspan(l4), pseudo) != 0xffff) std::abort();
    });
    if (!problem.empty() && frames != 0) std::abort();
    if (problem.empty() && frames == 0) std::abort();
    if (problem.empty() && tso && payload_out != frame.size() - headers) std::abort();
    return 0;
}
