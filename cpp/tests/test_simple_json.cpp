// The fast reader of simple JSON (cpp/src/simple_json.hpp) and the paths that use it must answer
// exactly as nlohmann does: checked on fixed cases and on generated texts, simple and not.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../src/adapters/adapters.hpp"
#include "../src/simple_json.hpp"
#include "herald/errors.hpp"
#include "herald/provider.hpp"

using herald::detail::SimpleJson;
using json = nlohmann::json;

namespace {

/// The top-level members as the fast reader sees them: "key=value" or "key:" for non-strings.
std::vector<std::string> members_of(const std::string& text, bool& simple) {
  std::vector<std::string> out;
  simple = SimpleJson::object_members(text, [&](std::string_view k, std::string_view v, bool is_text) {
    std::string m(k);
    m += is_text ? '=' : ':';
    if (is_text) m += v;
    out.push_back(std::move(m));
  });
  return out;
}

/// JSON-ish text: mostly valid, sometimes simple, sometimes broken in one place.
class Texts {
 public:
  explicit Texts(unsigned seed) : rng_(seed) {}

  std::string document() {
    std::string s = "{";
    const int n = pick(6);
    for (int i = 0; i < n; ++i) {
      if (i > 0) s += pick(8) == 0 ? " , " : ",";
      s += string_text(key());
      s += pick(6) == 0 ? " : " : ":";
      s += value(0);
    }
    s += "}";
    if (pick(10) == 0) {
      s.insert(0, " \n");
      s += '\t';
    }
    if (pick(6) == 0) mutate(s);
    return s;
  }
  std::string key() {
    static const char* keys[] = {"id", "sid", "name", "message_id", "code", "n", "user", "", "ID"};
    return keys[pick(9)];
  }
  int pick(int n) { return static_cast<int>(rng_() % static_cast<unsigned>(n)); }

 private:
  static std::string string_text(const std::string& inner) {
    std::string s = "\"";
    s += inner;
    s += '"';
    return s;
  }
  std::string value(int depth) {
    switch (pick(depth > 2 ? 8 : 11)) {
      case 0: case 1: case 2: return string_text(word());
      case 3: return std::to_string(static_cast<long long>(rng_() % 2000000) - 1000000);
      case 4: {
        static const char* odd[] = {"1.5", "-0", "0", "1e3", "12345678901234567890", "123456789012345678",
                                    "1E-2", "-12.0e+1", "1e999", "01", "-", "+1"};
        return odd[pick(12)];
      }
      case 5: return pick(2) ? "true" : "false";
      case 6: return "null";
      case 7: {
        static const char* strings[] = {R"("a\"b")", R"("caf\u00e9")", "\"caf\xc3\xa9\"", R"("\ud83d\ude00")",
                                        "\"\xff\"", R"("\ud800")", "\"tab\there\"", R"("back\\slash")", "\"\x7f\""};
        return strings[pick(9)];
      }
      case 8: {
        std::string s = "[";
        const int n = pick(4);
        for (int i = 0; i < n; ++i) {
          if (i > 0) s += ',';
          s += value(depth + 1);
        }
        s += ']';
        return s;
      }
      default: {
        std::string s = "{";
        const int n = pick(4);
        for (int i = 0; i < n; ++i) {
          if (i > 0) s += ',';
          s += string_text(key());
          s += ':';
          s += value(depth + 1);
        }
        s += '}';
        return s;
      }
    }
  }
  std::string word() {
    static const char* words[] = {"sink-1", "Ada", "", "x y", "{name}", "queued", "a|b", "123"};
    return words[pick(8)];
  }
  void mutate(std::string& s) {
    if (s.empty()) return;
    const auto at = static_cast<std::size_t>(pick(static_cast<int>(s.size())));
    static const char* junk[] = {"", ",", "}", "{", "\"", ":", "]", " x", "\x01", "\xef\xbb\xbf", "//c"};
    switch (pick(3)) {
      case 0: s.erase(at, 1); break;
      case 1: s.insert(at, junk[pick(11)]); break;
      default: s += junk[pick(11)];
    }
  }

  std::mt19937 rng_;
};

}  // namespace

TEST(SimpleJson, ReadsSimpleObjectsAndLeavesEverythingElseToNlohmann) {
  bool simple = false;
  EXPECT_EQ(members_of(R"({"id":"sink-1","status":"queued"})", simple), (std::vector<std::string>{"id=sink-1", "status=queued"}));
  EXPECT_TRUE(simple);
  EXPECT_EQ(members_of(R"( {"a":1,"b":[true,{"c":null}],"a":"x"} )", simple), (std::vector<std::string>{"a:", "b:", "a=x"}));
  EXPECT_TRUE(simple);
  EXPECT_EQ(members_of("{}", simple), std::vector<std::string>{});
  EXPECT_TRUE(simple);
  for (const char* not_simple : {R"({"a":"caf\u00e9"})", "{\"a\":\"caf\xc3\xa9\"}", R"({"a":1.5})", R"({"a":1e3})",
                                 R"({"a":1234567890123456789})", R"([1])", R"("a")", "", "{", R"({"a":1} x)",
                                 R"({"a":01})", R"({"a":tru})", "\xef\xbb\xbf{}", R"({"a":"b",})", R"({"a" "b"})"}) {
    members_of(not_simple, simple);
    EXPECT_FALSE(simple) << not_simple;
  }
}

TEST(SimpleJson, WhatItReadsNlohmannReadsTheSame) {
  Texts gen(20261129);
  int simple_count = 0;
  for (int round = 0; round < 20000; ++round) {
    const std::string text = gen.document();
    bool simple = false;
    std::map<std::string, std::string> last;  // each key's last value: "=text", or ":" for another value
    simple = SimpleJson::object_members(text, [&](std::string_view k, std::string_view v, bool is_text) {
      std::string m(1, is_text ? '=' : ':');
      if (is_text) m += v;
      last[std::string(k)] = std::move(m);
    });
    if (!simple) continue;
    ++simple_count;
    const json j = json::parse(text, nullptr, false);
    ASSERT_TRUE(j.is_object()) << text;
    ASSERT_EQ(last.size(), j.size()) << text;
    for (const auto& [k, v] : last) {
      const auto& value = j.at(k);
      std::string want(1, value.is_string() ? '=' : ':');
      if (value.is_string()) want += value.get<std::string>();
      EXPECT_EQ(v, want) << text;
    }
  }
  EXPECT_GT(simple_count, 2000);  // the generator makes both kinds
}

TEST(SimpleJson, MessageIdsAndRenderedTemplatesAreNlohmannsForEveryText) {
  Texts gen(7);
  const std::vector<std::string> templates{"{id}", "Hi {name|friend}!", "{user}", "{user.name|x}", "{code} {n}",
                                           "{{id}} {id|}", "{}", "{missing}", "{sid|a|b} {ID", "plain }} text",
                                           "{message_id}{id}{name}"};
  for (int round = 0; round < 20000; ++round) {
    const std::string text = gen.document();
    // The message id, against the DOM lookup.
    herald::http::Response r;
    r.status = 202;
    r.body = text;
    std::string expected_id;
    const json j = json::parse(text, nullptr, false);
    if (j.is_object()) {
      for (const char* key : {"id", "sid", "name", "message_id"}) {
        auto it = j.find(key);
        if (it != j.end() && it->is_string()) {
          expected_id = it->get<std::string>();
          break;
        }
      }
    }
    EXPECT_EQ(herald::classify_http(r).provider_message_id, expected_id) << text;
    // A template, against rendering from the parsed data (or its error).
    const std::string& tmpl = templates[static_cast<std::size_t>(gen.pick(static_cast<int>(templates.size())))];
    std::string expected, got;
    try {
      expected = herald::adapters::render_with(tmpl, j);
    } catch (const herald::TemplateError& e) {
      expected = std::string("error: ") + e.what();
    }
    try {
      got = herald::render_template(tmpl, text);
    } catch (const herald::TemplateError& e) {
      got = std::string("error: ") + e.what();
    }
    EXPECT_EQ(got, expected) << tmpl << " with " << text;
  }
}
