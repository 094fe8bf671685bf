#pragma once
// A small builder for ACPI Machine Language (ACPI 6.x section 20, "AML
// Specification"): just the declarative subset a DSDT needs to describe
// devices -- names, integers, packages, buffers, scopes and devices -- as
// byte vectors that nest by value. No methods, no operators: minikvm's
// namespace is static, so everything is a Name() holding data.
//
// Each function returns one complete AML term; a term list is those terms
// concatenated (append()). Names are ASL-style: a segment of up to four
// characters is padded with '_' ("_SB" is "_SB_"), segments are separated
// by '.', and a leading '\' makes the path absolute.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace minikvm::aml {

using Bytes = std::vector<uint8_t>;

// Appends `term` to `list`: how a TermList or a package's elements grow.
void append(Bytes& list, const Bytes& term);

// The PkgLength that precedes a package of `content_length` bytes. Its value
// counts its own 1-4 bytes too, so the encoding depends on its own size.
// Throws std::length_error beyond 2^28 - 1 bytes, the AML maximum.
Bytes pkg_length(size_t content_length);

// NameString: '\' for an absolute path, then one segment as is, two behind
// DualNamePrefix, more behind MultiNamePrefix and a count.
Bytes name_string(std::string_view path);

// The shortest encoding of `value`: ZeroOp, OneOp, or a Byte/Word/DWord/
// QWord prefix and the value little-endian.
Bytes integer(uint64_t value);

// A compressed EISA ID such as "PNP0A03": three letters in 5-bit fields,
// then four hex digits, stored as a DWord integer -- what ASL's EisaId()
// compiles to.
Bytes eisa_id(std::string_view id);

// A string constant: StringPrefix, the ASCII bytes, NUL. Throws
// std::invalid_argument for a NUL or a byte outside 0x01-0x7f.
Bytes string(std::string_view text);

// Name (name, value): binds `value`, a data term, to a name.
Bytes name(std::string_view name, const Bytes& value);

// Package () { elements... }: each element one data term.
Bytes package(const std::vector<Bytes>& elements);

// Buffer () { data }: raw bytes, e.g. a resource template.
Bytes buffer(const Bytes& data);

// Scope (path) { terms }: opens an existing namespace node such as \_SB.
Bytes scope(std::string_view path, const Bytes& terms);

// Device (path) { terms }: a new device object holding `terms`.
Bytes device(std::string_view path, const Bytes& terms);

}  // namespace minikvm::aml
