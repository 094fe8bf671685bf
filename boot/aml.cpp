#include "boot/aml.h"

#include <stdexcept>
#include <string>

namespace minikvm::aml {

namespace {

// Opcodes and prefixes, ACPI 6.x section 20.2.
constexpr uint8_t kZeroOp = 0x00;
constexpr uint8_t kOneOp = 0x01;
constexpr uint8_t kNameOp = 0x08;
constexpr uint8_t kBytePrefix = 0x0a;
constexpr uint8_t kWordPrefix = 0x0b;
constexpr uint8_t kDWordPrefix = 0x0c;
constexpr uint8_t kQWordPrefix = 0x0e;
constexpr uint8_t kScopeOp = 0x10;
constexpr uint8_t kBufferOp = 0x11;
constexpr uint8_t kPackageOp = 0x12;
constexpr uint8_t kDualNamePrefix = 0x2e;
constexpr uint8_t kMultiNamePrefix = 0x2f;
constexpr uint8_t kRootChar = '\\';
constexpr uint8_t kNullName = 0x00;
constexpr uint8_t kExtOpPrefix = 0x5b;
constexpr uint8_t kDeviceOp = 0x82;  // after kExtOpPrefix

constexpr size_t kNameSegLength = 4;
constexpr size_t kMaxPackageElements = 255;  // NumElements is one byte; more needs VarPackageOp

void put_le(Bytes& out, uint64_t value, size_t width) {
    for (size_t i = 0; i < width; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

bool is_lead_name_char(char c) { return (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_lead_name_char(c) || (c >= '0' && c <= '9'); }

// One NameSeg: exactly four characters, so shorter ASL names get '_' padding.
void put_name_seg(Bytes& out, std::string_view segment) {
    if (segment.empty() || segment.size() > kNameSegLength || !is_lead_name_char(segment[0]))
        throw std::invalid_argument("AML: bad name segment '" + std::string(segment) + "'");
    for (char c : segment)
        if (!is_name_char(c)) throw std::invalid_argument("AML: bad name segment '" + std::string(segment) + "'");
    out.insert(out.end(), segment.begin(), segment.end());
    out.insert(out.end(), kNameSegLength - segment.size(), '_');
}

// Opcode(s), PkgLength, then `content`: the shape of every variable-length term.
Bytes with_pkg_length(std::initializer_list<uint8_t> opcode, const Bytes& content) {
    Bytes out(opcode);
    append(out, pkg_length(content.size()));
    append(out, content);
    return out;
}

Bytes named_block(std::initializer_list<uint8_t> opcode, std::string_view path, const Bytes& terms) {
    Bytes content = name_string(path);
    append(content, terms);
    return with_pkg_length(opcode, content);
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

void append(Bytes& list, const Bytes& term) { list.insert(list.end(), term.begin(), term.end()); }

Bytes pkg_length(size_t content_length) {
    // One byte holds 6 bits of length. With 1-3 more bytes the lead byte
    // keeps only 4 (bits 5:4 must be 0) and each extra byte adds 8; bits 7:6
    // say how many extra bytes follow.
    if (content_length + 1 <= 0x3f) return {static_cast<uint8_t>(content_length + 1)};
    for (size_t extra = 1; extra <= 3; ++extra) {
        const size_t total = content_length + 1 + extra;
        if (total >= (size_t{1} << (4 + 8 * extra))) continue;
        Bytes out{static_cast<uint8_t>(extra << 6 | (total & 0xf))};
        for (size_t i = 0; i < extra; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
        return out;
    }
    throw std::length_error("AML: package longer than a PkgLength can encode");
}

Bytes name_string(std::string_view path) {
    Bytes out;
    if (!path.empty() && path.front() == '\\') {
        out.push_back(kRootChar);
        path.remove_prefix(1);
    } else if (path.empty()) {
        throw std::invalid_argument("AML: empty name");
    }
    std::vector<std::string_view> segments;
    while (!path.empty()) {
        const size_t dot = path.find('.');
        segments.push_back(path.substr(0, dot));
        path = dot == std::string_view::npos ? std::string_view{} : path.substr(dot + 1);
        if (dot != std::string_view::npos && path.empty()) throw std::invalid_argument("AML: name ends in '.'");
    }
    if (segments.empty()) {
        out.push_back(kNullName);  // just "\": the root itself
    } else if (segments.size() == 2) {
        out.push_back(kDualNamePrefix);
    } else if (segments.size() > 2) {
        if (segments.size() > 255) throw std::invalid_argument("AML: name path too deep");
        out.push_back(kMultiNamePrefix);
        out.push_back(static_cast<uint8_t>(segments.size()));
    }
    for (std::string_view segment : segments) put_name_seg(out, segment);
    return out;
}

Bytes integer(uint64_t value) {
    if (value == 0) return {kZeroOp};
    if (value == 1) return {kOneOp};
    Bytes out;
    if (value <= 0xff) {
        out.push_back(kBytePrefix);
        put_le(out, value, 1);
    } else if (value <= 0xffff) {
        out.push_back(kWordPrefix);
        put_le(out, value, 2);
    } else if (value <= 0xffff'ffff) {
        out.push_back(kDWordPrefix);
        put_le(out, value, 4);
    } else {
        out.push_back(kQWordPrefix);  // needs a revision 2+ definition block (64-bit integers)
        put_le(out, value, 8);
    }
    return out;
}

Bytes string(std::string_view text) {
    Bytes out{0x0d};  // StringPrefix
    for (char c : text) {
        if (c <= 0 || static_cast<unsigned char>(c) > 0x7f) throw std::invalid_argument("AML: strings are ASCII without NUL");
        out.push_back(static_cast<uint8_t>(c));
    }
    out.push_back(0);
    return out;
}

Bytes eisa_id(std::string_view id) {
    if (id.size() != 7) throw std::invalid_argument("AML: EISA ID must be like PNP0A03");
    uint16_t vendor = 0;
    for (size_t i = 0; i < 3; ++i) {
        if (id[i] < 'A' || id[i] > 'Z') throw std::invalid_argument("AML: EISA ID vendor must be 3 letters");
        vendor = static_cast<uint16_t>(vendor << 5 | (id[i] - 'A' + 1));  // 'A' is 1
    }
    uint16_t product = 0;
    for (size_t i = 3; i < 7; ++i) {
        const int digit = hex_digit(id[i]);
        if (digit < 0) throw std::invalid_argument("AML: EISA ID product must be 4 hex digits");
        product = static_cast<uint16_t>(product << 4 | digit);
    }
    // Both halves are stored big-endian in memory; read as a little-endian
    // DWord that is vendor_hi | vendor_lo << 8 | product_hi << 16 | product_lo << 24.
    // Always a DWordConst, as ASL's EisaId() emits, whatever the value.
    Bytes out{kDWordPrefix};
    out.push_back(static_cast<uint8_t>(vendor >> 8));
    out.push_back(static_cast<uint8_t>(vendor));
    out.push_back(static_cast<uint8_t>(product >> 8));
    out.push_back(static_cast<uint8_t>(product));
    return out;
}

Bytes name(std::string_view name, const Bytes& value) {
    Bytes out{kNameOp};
    append(out, name_string(name));
    append(out, value);
    return out;
}

Bytes package(const std::vector<Bytes>& elements) {
    if (elements.size() > kMaxPackageElements) throw std::length_error("AML: package has over 255 elements");
    Bytes content{static_cast<uint8_t>(elements.size())};
    for (const Bytes& element : elements) append(content, element);
    return with_pkg_length({kPackageOp}, content);
}

Bytes buffer(const Bytes& data) {
    Bytes content = integer(data.size());  // BufferSize
    append(content, data);
    return with_pkg_length({kBufferOp}, content);
}

Bytes scope(std::string_view path, const Bytes& terms) { return named_block({kScopeOp}, path, terms); }

Bytes device(std::string_view path, const Bytes& terms) {
    return named_block({kExtOpPrefix, kDeviceOp}, path, terms);
}

}  // namespace minikvm::aml
