#pragma once
// What a tap does for a guest's transmit offloads, done in software for a
// backend that takes only complete frames (libslirp): fill in a partial
// checksum (NEEDS_CSUM) and cut a TCP segmentation super-packet (TCPV4,
// TCPV6) into MSS-sized segments with their own IP and TCP headers and
// checksums. Pure: a header and a frame in, complete frames out; the guest
// keeps its offloads on whatever the backend. Allocation-free once warm:
// a partial checksum is filled in where the frame is, and segments are
// built in a buffer the caller keeps from frame to frame.

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "vmm/backends/net/net_header.h"

namespace minikvm::net {

// Receives each complete frame; the span is valid during the call only.
using FrameSink = std::function<void(std::span<const uint8_t> frame)>;

// Hands `frame` (the bytes after the virtio-net header) to `sink` as one or
// more complete frames. Returns "" when it did, else why the frame cannot
// be completed (nothing was handed over then): for a counter and a log line.
// The header is trusted no further than net::check_transmit() checks it.
// `frame` is the caller's own copy (never memory the guest can still
// write): a partial checksum is stored into it in place. The segments of a
// super-packet are built one at a time in `scratch`, which the caller keeps
// so that its capacity is reused.
std::string complete_offloads(const Header& header, std::span<uint8_t> frame, std::vector<uint8_t>& scratch,
                              const FrameSink& sink);

// The Internet checksum's one's-complement sum of `bytes` added to `sum`,
// not folded and not inverted (RFC 1071).
uint32_t checksum_add(uint32_t sum, std::span<const uint8_t> bytes);
// Folds a sum to 16 bits and inverts it: the value a checksum field holds.
uint16_t checksum_finish(uint32_t sum);

}  // namespace minikvm::net
