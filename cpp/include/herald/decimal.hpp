#pragma once
/// An integer's decimal digits written into room reserved beforehand, for the hot paths' text:
/// log lines, packed events and request bodies write about forty integers per notification, most
/// of them ids and microsecond times of 16 to 19 digits. std::to_chars counts the digits in one
/// pass and then divides the 64-bit value by 100 for each pair; here the value is cut into parts of
/// eight digits (one or two 64-bit divisions), and each part is written in 32-bit arithmetic, two
/// digits per table lookup. Measured under callgrind: about half the instructions of to_chars for
/// the integers of a log line (docs/architecture.md).
#include <concepts>
#include <cstdint>
#include <cstring>

namespace herald::detail {

/// "00" "01" ... "99": two digits per entry.
inline constexpr char digit_pairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/// The room the longest integer takes: "-9223372036854775808".
inline constexpr std::size_t decimal_bound = 20;

namespace decimal_parts {

inline char* pair(char* p, std::uint32_t v) {  // v < 100: exactly two digits
  std::memcpy(p, digit_pairs + 2 * v, 2);
  return p + 2;
}

inline char* four(char* p, std::uint32_t v) {  // v < 10^4: exactly four digits
  return pair(pair(p, v / 100), v % 100);
}

inline char* eight(char* p, std::uint32_t v) {  // v < 10^8: exactly eight digits
  return four(four(p, v / 10000), v % 10000);
}

inline char* up_to_four(char* p, std::uint32_t v) {  // v < 10^4, no leading zeros
  if (v < 10) {
    *p = static_cast<char>('0' + v);
    return p + 1;
  }
  if (v < 100) return pair(p, v);
  if (v < 1000) {
    *p = static_cast<char>('0' + v / 100);
    return pair(p + 1, v % 100);
  }
  return four(p, v);
}

inline char* up_to_eight(char* p, std::uint32_t v) {  // v < 10^8, no leading zeros
  if (v < 10000) return up_to_four(p, v);
  return four(up_to_four(p, v / 10000), v % 10000);
}

}  // namespace decimal_parts

/// Writes `v` in decimal at `p` (room for `decimal_bound` bytes) and returns the end.
inline char* write_decimal(char* p, std::uint64_t v) {
  using namespace decimal_parts;
  constexpr std::uint64_t e8 = 100000000;
  if (v < e8) return up_to_eight(p, static_cast<std::uint32_t>(v));
  if (v < e8 * e8) {
    const std::uint64_t high = v / e8;
    return eight(up_to_eight(p, static_cast<std::uint32_t>(high)), static_cast<std::uint32_t>(v - high * e8));
  }
  const std::uint64_t top = v / (e8 * e8);  // at most 1844
  const std::uint64_t rest = v - top * (e8 * e8);
  const std::uint64_t middle = rest / e8;
  p = up_to_eight(p, static_cast<std::uint32_t>(top));
  p = eight(p, static_cast<std::uint32_t>(middle));
  return eight(p, static_cast<std::uint32_t>(rest - middle * e8));
}

inline char* write_decimal(char* p, std::int64_t v) {
  auto u = static_cast<std::uint64_t>(v);
  if (v < 0) {
    *p++ = '-';
    u = 0 - u;  // the magnitude, also of the most negative value
  }
  return write_decimal(p, u);
}

/// Any other integer type, through the 64-bit form of its signedness.
template <std::integral Int>
  requires(!std::same_as<Int, bool> && !std::same_as<Int, std::int64_t> && !std::same_as<Int, std::uint64_t>)
char* write_decimal(char* p, Int v) {
  if constexpr (std::is_signed_v<Int>) {
    return write_decimal(p, static_cast<std::int64_t>(v));
  } else {
    return write_decimal(p, static_cast<std::uint64_t>(v));
  }
}

}  // namespace herald::detail
