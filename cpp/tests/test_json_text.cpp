#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "herald/event.hpp"
#include "herald/json_text.hpp"

using herald::detail::append_json_string;

namespace {
std::string json_quoted(std::string_view s) {
  std::string out = "x";  // appends: what is there stays
  append_json_string(out, s);
  return out;
}
}  // namespace

TEST(JsonText, EscapesQuotesBackslashesAndControlCharactersOnly) {
  EXPECT_EQ(json_quoted(""), "x\"\"");
  EXPECT_EQ(json_quoted("Autumn sale"), "x\"Autumn sale\"");
  EXPECT_EQ(json_quoted(R"(a"b\c)"), R"(x"a\"b\\c")");
  EXPECT_EQ(json_quoted("\n\r\t"), R"(x"\n\r\t")");
  EXPECT_EQ(json_quoted(std::string("a\0b\x01\x1f\x7f", 6)), "x\"a\\u0000b\\u0001\\u001f\x7f\"");
  EXPECT_EQ(json_quoted("café ☕"), "x\"café ☕\"");
  EXPECT_EQ(json_quoted("\"start and end\\"), R"(x"\"start and end\\")");
}

TEST(JsonText, EveryByteReadsBackAsItWas) {
  std::string all;
  for (int c = 1; c < 0x80; ++c) all += static_cast<char>(c);
  all += "\xc3\xa9\xe2\x98\x95";  // UTF-8 passes through
  std::string out;
  append_json_string(out, all);
  EXPECT_EQ(nlohmann::json::parse(out).get<std::string>(), all);
}

TEST(JsonText, ThePlainStartIsFoundEightBytesAtATimeAsByteByByte) {
  // Each byte that needs an escape, and bytes next to the tests' edges (0x1f/0x20, 0x21/0x23,
  // 0x5b/0x5d, 0x7f/0x80, 0xff), at every position of texts up to 40 bytes long.
  const unsigned char probes[] = {0x00, 0x01, 0x1f, 0x20, 0x21, '"', 0x23, 0x5b, '\\', 0x5d, 0x7f, 0x80, 0xa2, 0xdc, 0xff};
  for (std::size_t len = 0; len <= 40; ++len) {
    for (std::size_t at = 0; at < len; ++at) {
      for (const unsigned char fill : {static_cast<unsigned char>('a'), static_cast<unsigned char>(0xe2)}) {
        for (const unsigned char probe : probes) {
          std::string s(len, static_cast<char>(fill));
          s[at] = static_cast<char>(probe);
          std::size_t expected = 0;
          while (expected < s.size() && herald::detail::json_plain(static_cast<unsigned char>(s[expected]))) ++expected;
          ASSERT_EQ(herald::detail::json_plain_prefix(s), expected) << "len " << len << " at " << at << " byte " << int(probe);
        }
      }
    }
  }
  EXPECT_EQ(herald::detail::json_plain_prefix(""), 0u);
}

TEST(JsonText, EveryEnumNameWrittenUnscannedNeedsNoEscape) {
  // The log writes these names with plain_string(), which does not escape.
  for (int k = 0; k < herald::event_kind_count; ++k) {
    const auto name = herald::to_string(static_cast<herald::EventKind>(k));
    EXPECT_EQ(herald::detail::json_plain_prefix(name), name.size()) << name;
  }
  for (int k = 0; k < herald::error_class_count; ++k) {
    const auto name = herald::to_string(static_cast<herald::ErrorClass>(k));
    EXPECT_EQ(herald::detail::json_plain_prefix(name), name.size()) << name;
  }
  for (int k = 0; k <= static_cast<int>(herald::Priority::bulk); ++k) {
    const auto name = herald::to_string(static_cast<herald::Priority>(k));
    EXPECT_EQ(herald::detail::json_plain_prefix(name), name.size()) << name;
  }
}
