#pragma once
// The hex spellings of GDB's remote protocol: numbers as big-endian hex
// digits of any length ("1f", "ffffffff81000000"), data as two lower-case
// digits a byte. Decoding trusts nothing: an empty field, a stray character,
// an odd digit count or a number past 64 bits is a failure, never a guess.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace minikvm::gdb {

// The value of one hex digit, or -1.
int hex_digit_value(char c);

// A whole field as an unsigned number; nullopt if empty, not all hex, or over 64 bits.
std::optional<uint64_t> parse_hex_number(std::string_view text);

// Bytes from pairs of hex digits; nullopt on an odd count or a non-hex digit.
std::optional<std::vector<uint8_t>> decode_hex_bytes(std::string_view text);

void append_hex_bytes(std::string& out, std::span<const uint8_t> bytes);
std::string hex_bytes(std::span<const uint8_t> bytes);
// A number in the fewest digits (at least one), as thread ids and addresses are sent.
void append_hex_number(std::string& out, uint64_t value);
// Exactly two digits: signal numbers, exit statuses, error codes.
void append_hex_byte(std::string& out, uint8_t value);

}  // namespace minikvm::gdb
