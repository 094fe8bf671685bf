#include "vmm/backends/gdb/gdb_hex.h"

namespace minikvm::gdb {

namespace {
constexpr char kDigits[] = "0123456789abcdef";
}  // namespace

int hex_digit_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::optional<uint64_t> parse_hex_number(std::string_view text) {
    if (text.empty()) return std::nullopt;
    uint64_t value = 0;
    for (char c : text) {
        int digit = hex_digit_value(c);
        if (digit < 0) return std::nullopt;
        // Leading zeros are harmless; a significant 17th digit is an overflow.
        if (value >> 60 != 0) return std::nullopt;
        value = value << 4 | static_cast<uint64_t>(digit);
    }
    return value;
}

std::optional<std::vector<uint8_t>> decode_hex_bytes(std::string_view text) {
    if (text.size() % 2 != 0) return std::nullopt;
    std::vector<uint8_t> bytes;
    bytes.reserve(text.size() / 2);  // bounded by the packet that holds the text
    for (size_t i = 0; i < text.size(); i += 2) {
        int high = hex_digit_value(text[i]);
        int low = hex_digit_value(text[i + 1]);
        if (high < 0 || low < 0) return std::nullopt;
        bytes.push_back(static_cast<uint8_t>(high << 4 | low));
    }
    return bytes;
}

void append_hex_byte(std::string& out, uint8_t value) {
    out += kDigits[value >> 4];
    out += kDigits[value & 0xf];
}

void append_hex_bytes(std::string& out, std::span<const uint8_t> bytes) {
    out.reserve(out.size() + 2 * bytes.size());
    for (uint8_t byte : bytes) append_hex_byte(out, byte);
}

std::string hex_bytes(std::span<const uint8_t> bytes) {
    std::string out;
    append_hex_bytes(out, bytes);
    return out;
}

void append_hex_number(std::string& out, uint64_t value) {
    int shift = 60;
    while (shift > 0 && (value >> shift) == 0) shift -= 4;
    for (; shift >= 0; shift -= 4) out += kDigits[(value >> shift) & 0xf];
}

}  // namespace minikvm::gdb
