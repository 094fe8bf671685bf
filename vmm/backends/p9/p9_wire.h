#pragma once
// The byte level of 9P: little-endian integers, strings as a 16-bit length
// and that many bytes (no NUL), qids. WireReader never reads past the end of
// the message it was given: a field that does not fit sets failed() and
// reads as zero / empty, so a decoder checks once at the end.

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace minikvm::p9 {

// A qid: the server's identity for a file (type bits, version, unique path).
struct Qid {
    uint8_t type = 0;
    uint32_t version = 0;
    uint64_t path = 0;
    bool operator==(const Qid&) const = default;
};
inline constexpr size_t kQidSize = 13;

class WireReader {
public:
    explicit WireReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

    uint8_t u8() { return static_cast<uint8_t>(take(1)); }
    uint16_t u16() { return static_cast<uint16_t>(take(2)); }
    uint32_t u32() { return static_cast<uint32_t>(take(4)); }
    uint64_t u64() { return take(8); }
    // A string's bytes, as sent (may hold NULs or bad UTF-8: the caller
    // validates what it uses). Points into the message.
    std::string_view string();
    // `count` raw bytes, pointing into the message.
    std::span<const uint8_t> bytes(size_t count);

    bool failed() const { return failed_; }
    size_t remaining() const { return bytes_.size() - position_; }

private:
    uint64_t take(size_t count);

    std::span<const uint8_t> bytes_;
    size_t position_ = 0;
    bool failed_ = false;
};

// Appends to a byte vector it does not own; the caller bounds the total.
class WireWriter {
public:
    explicit WireWriter(std::vector<uint8_t>& out) : out_(out) {}

    void u8(uint8_t value) { put(value, 1); }
    void u16(uint16_t value) { put(value, 2); }
    void u32(uint32_t value) { put(value, 4); }
    void u64(uint64_t value) { put(value, 8); }
    // Strings longer than 65535 bytes are the caller's bug; they are cut.
    void string(std::string_view text);
    void bytes(std::span<const uint8_t> data);
    void qid(const Qid& qid);
    size_t size() const { return out_.size(); }

private:
    void put(uint64_t value, size_t count);
    std::vector<uint8_t>& out_;
};

// Overwrites a 32-bit little-endian value at `offset` (a size or a count
// known only at the end).
void patch_u32(std::span<uint8_t> bytes, size_t offset, uint32_t value);

}  // namespace minikvm::p9
