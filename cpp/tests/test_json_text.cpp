#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

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
