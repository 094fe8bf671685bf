#pragma once
// A tiny AML decoder for tests: just the terms boot/aml.h emits (Name,
// Scope, Device, Package, Buffer, integers), decoded from the bytes alone
// so tests check what a guest's interpreter would see. Strict: anything
// else, a PkgLength that overruns its parent, a package whose element count
// disagrees with its contents or a buffer whose size disagrees with its
// bytes throws std::runtime_error.

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace aml_reader {

struct Node {
    enum class Kind { kInteger, kName, kPackage, kBuffer, kScope, kDevice };
    Kind kind;
    std::string name;                 // kName, kScope, kDevice: the path, e.g. "\_SB_.PCI0"
    uint64_t value = 0;               // kInteger
    std::vector<uint8_t> bytes;       // kBuffer
    std::vector<Node> children;       // kName: its one value; kPackage: elements; kScope/kDevice: terms
};

// Reads one PkgLength at `at`; returns its value, the byte count from `at`
// to the end of the package, and advances `at` past the PkgLength itself.
inline size_t read_pkg_length(std::span<const uint8_t> aml, size_t& at) {
    if (at >= aml.size()) throw std::runtime_error("AML: PkgLength past the end");
    const uint8_t lead = aml[at];
    const size_t extra = lead >> 6;
    if (extra == 0) {
        ++at;
        return lead & 0x3f;
    }
    if (lead & 0x30) throw std::runtime_error("AML: PkgLength lead byte bits 5:4 set");
    if (at + extra >= aml.size()) throw std::runtime_error("AML: PkgLength past the end");
    size_t value = lead & 0xf;
    for (size_t i = 1; i <= extra; ++i) value |= size_t{aml[at + i]} << (4 + 8 * (i - 1));
    at += 1 + extra;
    return value;
}

class Reader {
public:
    explicit Reader(std::span<const uint8_t> aml) : aml_(aml) {}

    // Every term in [at, end); must end exactly at `end`.
    std::vector<Node> term_list(size_t at, size_t end) {
        std::vector<Node> terms;
        at_ = at;
        while (at_ < end) terms.push_back(term(end));
        if (at_ != end) throw std::runtime_error("AML: term overruns its container");
        return terms;
    }

private:
    uint8_t next(size_t limit) {
        if (at_ >= limit) throw std::runtime_error("AML: truncated");
        return aml_[at_++];
    }

    // Where the package that starts with a PkgLength at at_ ends.
    size_t package_end(size_t limit) {
        const size_t start = at_;
        const size_t end = start + read_pkg_length(aml_, at_);
        if (end > limit || end < at_) throw std::runtime_error("AML: PkgLength overruns its container");
        return end;
    }

    std::string name_seg(size_t limit) {
        std::string seg;
        for (int i = 0; i < 4; ++i) seg.push_back(static_cast<char>(next(limit)));
        return seg;
    }

    std::string name_string(size_t limit) {
        std::string path;
        if (at_ < limit && aml_[at_] == '\\') path.push_back(static_cast<char>(next(limit)));
        const uint8_t prefix = next(limit);
        size_t count = 1;
        if (prefix == 0x00) return path;  // NullName
        if (prefix == 0x2e) {
            count = 2;
        } else if (prefix == 0x2f) {
            count = next(limit);
        } else {
            --at_;  // a plain NameSeg
        }
        // Appended piece by piece: `"." + std::string` trips GCC 12's false
        // -Wrestrict at -O3.
        for (size_t i = 0; i < count; ++i) {
            if (i) path += '.';
            path += name_seg(limit);
        }
        return path;
    }

    uint64_t little_endian(size_t width, size_t limit) {
        uint64_t value = 0;
        for (size_t i = 0; i < width; ++i) value |= uint64_t{next(limit)} << (8 * i);
        return value;
    }

    Node data_object(size_t limit) {
        const uint8_t op = next(limit);
        switch (op) {
        case 0x00: return Node{Node::Kind::kInteger, "", 0, {}, {}};
        case 0x01: return Node{Node::Kind::kInteger, "", 1, {}, {}};
        case 0x0a: return Node{Node::Kind::kInteger, "", little_endian(1, limit), {}, {}};
        case 0x0b: return Node{Node::Kind::kInteger, "", little_endian(2, limit), {}, {}};
        case 0x0c: return Node{Node::Kind::kInteger, "", little_endian(4, limit), {}, {}};
        case 0x0e: return Node{Node::Kind::kInteger, "", little_endian(8, limit), {}, {}};
        case 0x12: {
            const size_t end = package_end(limit);
            const size_t count = next(end);
            Node package{Node::Kind::kPackage, "", 0, {}, {}};
            while (at_ < end) package.children.push_back(data_object(end));
            if (package.children.size() != count) throw std::runtime_error("AML: package count mismatch");
            return package;
        }
        case 0x11: {
            const size_t end = package_end(limit);
            const Node size = data_object(end);
            if (size.kind != Node::Kind::kInteger || size.value != end - at_)
                throw std::runtime_error("AML: buffer size mismatch");
            Node buffer{Node::Kind::kBuffer, "", 0, {}, {}};
            buffer.bytes.assign(aml_.begin() + static_cast<std::ptrdiff_t>(at_),
                                aml_.begin() + static_cast<std::ptrdiff_t>(end));
            at_ = end;
            return buffer;
        }
        default: throw std::runtime_error("AML: unexpected data opcode " + std::to_string(op));
        }
    }

    Node term(size_t limit) {
        const uint8_t op = next(limit);
        if (op == 0x08) {
            Node name{Node::Kind::kName, name_string(limit), 0, {}, {}};
            name.children.push_back(data_object(limit));
            return name;
        }
        Node::Kind kind;
        if (op == 0x10) {
            kind = Node::Kind::kScope;
        } else if (op == 0x5b && next(limit) == 0x82) {
            kind = Node::Kind::kDevice;
        } else {
            throw std::runtime_error("AML: unexpected term opcode " + std::to_string(op));
        }
        const size_t end = package_end(limit);
        Node block{kind, name_string(end), 0, {}, {}};
        const size_t resume = end;
        Reader inner(aml_);
        block.children = inner.term_list(at_, end);
        at_ = resume;
        return block;
    }

    std::span<const uint8_t> aml_;
    size_t at_ = 0;
};

inline std::vector<Node> parse(std::span<const uint8_t> aml) { return Reader(aml).term_list(0, aml.size()); }

// The term named `name` among `terms`, or nullptr.
inline const Node* find(const std::vector<Node>& terms, std::string_view name) {
    for (const Node& node : terms)
        if (node.name == name) return &node;
    return nullptr;
}

}  // namespace aml_reader
