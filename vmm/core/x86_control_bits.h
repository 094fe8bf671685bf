#pragma once
// Architectural bits of the x86 control registers, EFER and page-table
// entries (Intel SDM vol. 3A, 2.5 and 4.x), for the code that sets up the
// boot CPU state and the code that walks the guest's page tables.

#include <cstdint>

namespace minikvm::x86 {

inline constexpr uint64_t kCr0ProtectionEnable = 1ULL << 0;
inline constexpr uint64_t kCr0ExtensionType = 1ULL << 4;
inline constexpr uint64_t kCr0Paging = 1ULL << 31;

inline constexpr uint64_t kCr4Pse = 1ULL << 4;
inline constexpr uint64_t kCr4Pae = 1ULL << 5;
inline constexpr uint64_t kCr4La57 = 1ULL << 12;

inline constexpr uint64_t kEferLme = 1ULL << 8;
inline constexpr uint64_t kEferLma = 1ULL << 10;

inline constexpr uint64_t kPagePresent = 1ULL << 0;
inline constexpr uint64_t kPageWritable = 1ULL << 1;
inline constexpr uint64_t kPageSize = 1ULL << 7;  // a large page, not a table

}  // namespace minikvm::x86
