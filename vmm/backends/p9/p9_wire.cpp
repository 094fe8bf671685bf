#include "vmm/backends/p9/p9_wire.h"

#include <algorithm>

namespace minikvm::p9 {

uint64_t WireReader::take(size_t count) {
    if (failed_ || remaining() < count) {
        failed_ = true;
        return 0;
    }
    uint64_t value = 0;
    for (size_t i = 0; i < count; ++i) value |= uint64_t{bytes_[position_ + i]} << (8 * i);
    position_ += count;
    return value;
}

std::string_view WireReader::string() {
    const uint16_t length = u16();
    const std::span<const uint8_t> text = bytes(length);
    return {reinterpret_cast<const char*>(text.data()), text.size()};
}

std::span<const uint8_t> WireReader::bytes(size_t count) {
    if (failed_ || remaining() < count) {
        failed_ = true;
        return {};
    }
    const std::span<const uint8_t> out = bytes_.subspan(position_, count);
    position_ += count;
    return out;
}

void WireWriter::put(uint64_t value, size_t count) {
    for (size_t i = 0; i < count; ++i) out_.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

void WireWriter::string(std::string_view text) {
    const size_t length = std::min<size_t>(text.size(), UINT16_MAX);
    u16(static_cast<uint16_t>(length));
    out_.insert(out_.end(), text.begin(), text.begin() + static_cast<std::ptrdiff_t>(length));
}

void WireWriter::bytes(std::span<const uint8_t> data) { out_.insert(out_.end(), data.begin(), data.end()); }

void WireWriter::qid(const Qid& qid) {
    u8(qid.type);
    u32(qid.version);
    u64(qid.path);
}

void patch_u32(std::span<uint8_t> bytes, size_t offset, uint32_t value) {
    for (size_t i = 0; i < 4; ++i) bytes[offset + i] = static_cast<uint8_t>(value >> (8 * i));
}

}  // namespace minikvm::p9
