#include <gtest/gtest.h>

#include <charconv>
#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include "herald/decimal.hpp"

using herald::detail::decimal_bound;
using herald::detail::write_decimal;

namespace {

template <typename Int>
std::string ours(Int v) {
  char text[decimal_bound + 4];
  const char* end = write_decimal(text, v);
  EXPECT_LE(static_cast<std::size_t>(end - text), decimal_bound) << v;
  return {text, static_cast<std::size_t>(end - text)};
}

template <typename Int>
std::string reference(Int v) {
  char text[32];
  return {text, static_cast<std::size_t>(std::to_chars(text, text + sizeof text, v).ptr - text)};
}

}  // namespace

TEST(Decimal, EveryLengthAndItsEdges) {
  // 10^k - 1, 10^k and 10^k + 1 for every k a 64-bit integer holds: each length and where the
  // writer changes from one part to the next (10^4, 10^8, 10^16).
  std::uint64_t p = 1;
  for (int k = 0; k <= 19; ++k) {
    for (const std::uint64_t v : {p - 1, p, p + 1}) {
      EXPECT_EQ(ours(v), reference(v));
      const auto s = static_cast<std::int64_t>(v);
      if (s >= 0) {
        EXPECT_EQ(ours(s), reference(s));
        EXPECT_EQ(ours(-s), reference(-s));
      }
    }
    if (k < 19) p *= 10;
  }
}

TEST(Decimal, TheLimitsOfEachType) {
  EXPECT_EQ(ours(std::numeric_limits<std::int64_t>::min()), "-9223372036854775808");
  EXPECT_EQ(ours(std::numeric_limits<std::int64_t>::max()), "9223372036854775807");
  EXPECT_EQ(ours(std::numeric_limits<std::uint64_t>::max()), "18446744073709551615");
  EXPECT_EQ(ours(std::numeric_limits<int>::min()), "-2147483648");
  EXPECT_EQ(ours(std::numeric_limits<unsigned>::max()), "4294967295");
  EXPECT_EQ(ours(static_cast<short>(-7)), "-7");
  EXPECT_EQ(ours(0), "0");
  EXPECT_EQ(ours(std::size_t{202}), "202");
  EXPECT_EQ(ours(-1LL), "-1");
}

TEST(Decimal, AgreesWithToCharsOnRandomValuesOfEveryMagnitude) {
  std::mt19937_64 random(20261130);
  for (int i = 0; i < 200000; ++i) {
    const std::uint64_t bits = random();
    const std::uint64_t u = bits >> (random() % 64);  // every magnitude, not only 19-20 digits
    ASSERT_EQ(ours(u), reference(u));
    const auto s = static_cast<std::int64_t>(u);
    ASSERT_EQ(ours(s), reference(s));
    if (s != std::numeric_limits<std::int64_t>::min()) {
      ASSERT_EQ(ours(-s), reference(-s));
    }
  }
}
