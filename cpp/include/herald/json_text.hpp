#pragma once
/// Writing JSON text directly into a string, for the hot paths (log lines, request bodies) where
/// building a nlohmann::json document first would cost an allocation per field.
#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "herald/decimal.hpp"

namespace herald::detail {

/// Appends an integer's decimal digits without a temporary string.
template <typename Int>
void append_int(std::string& out, Int value) {
  char digits[decimal_bound];
  const char* end = write_decimal(digits, value);
  out.append(digits, static_cast<std::size_t>(end - digits));
}

/// Whether byte `c` goes into a JSON string as it is (no escape).
constexpr bool json_plain(unsigned char c) { return c >= 0x20 && c != '"' && c != '\\'; }

/// Writes JSON text into memory reserved beforehand, for a line whose size has a known bound:
/// no capacity check per field. The caller makes room for `bound()` of what it writes.
class JsonWriter {
 public:
  explicit JsonWriter(char* at) : p_(at) {}
  /// Room a quoted, escaped `s` may take: each byte may become "\u00XX".
  static constexpr std::size_t string_bound(std::string_view s) { return 2 + 6 * s.size(); }
  static constexpr std::size_t int_bound = decimal_bound;

  template <std::size_t N>
  void raw(const char (&text)[N]) {
    std::memcpy(p_, text, N - 1);
    p_ += N - 1;
  }
  void raw(char c) { *p_++ = c; }
  /// Text that is JSON already (a validated object, digits), as it is.
  void text(std::string_view s) { copy(s.data(), s.size()); }
  template <typename Int>
  void integer(Int value) {
    p_ = write_decimal(p_, value);
  }
  /// `s` quoted; UTF-8 passes through, control characters, quotes and backslashes are escaped.
  void string(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    *p_++ = '"';
    std::size_t plain = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (json_plain(c)) continue;
      copy(s.data() + plain, i - plain);
      plain = i + 1;
      *p_++ = '\\';
      switch (c) {
        case '"': *p_++ = '"'; break;
        case '\\': *p_++ = '\\'; break;
        case '\n': *p_++ = 'n'; break;
        case '\r': *p_++ = 'r'; break;
        case '\t': *p_++ = 't'; break;
        default:
          raw("u00");
          *p_++ = hex[c >> 4];
          *p_++ = hex[c & 0xf];
      }
    }
    copy(s.data() + plain, s.size() - plain);
    *p_++ = '"';
  }
  [[nodiscard]] char* end() const { return p_; }

 private:
  void copy(const char* from, std::size_t n) {
    if (n == 0) return;
    std::memcpy(p_, from, n);
    p_ += n;
  }
  char* p_;
};

/// Appends `s` as a quoted JSON string. UTF-8 passes through; control characters are escaped.
inline void append_json_string(std::string& out, std::string_view s) {
  // Most texts need no escape: appended as they are, without sizing the room for the worst case
  // (six bytes per byte, zero-filled, which outgrew a request body's reserved room).
  if (std::all_of(s.begin(), s.end(), [](char c) { return json_plain(static_cast<unsigned char>(c)); })) {
    out.reserve(out.size() + s.size() + 2);
    out += '"';
    out.append(s);
    out += '"';
    return;
  }
  const std::size_t start = out.size();
  out.resize(start + JsonWriter::string_bound(s));
  JsonWriter w(out.data() + start);
  w.string(s);
  out.resize(static_cast<std::size_t>(w.end() - out.data()));
}

}  // namespace herald::detail
