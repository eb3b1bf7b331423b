#pragma once
/// Writing JSON text directly into a string, for the hot paths (log lines, request bodies) where
/// building a nlohmann::json document first would cost an allocation per field.
#include <cstdint>
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

/// How many of `s`'s first bytes go into a JSON string as they are: the length of its plain start,
/// all of it for most texts. Eight bytes at a time: a word holds a byte below 0x20, a quote or a
/// backslash exactly when one of the three tests sets a byte's top bit (a borrow only carries
/// past a byte that was itself found).
inline std::size_t json_plain_prefix(std::string_view s) noexcept {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t tops = 0x8080808080808080ULL;
  std::size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, s.data() + i, 8);  // byte order does not matter: only whether any byte is found
    const std::uint64_t quote = w ^ (ones * '"');
    const std::uint64_t backslash = w ^ (ones * '\\');
    const std::uint64_t found = ((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
    if ((found & tops) != 0) break;
  }
  while (i < s.size() && json_plain(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

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
    for (std::size_t i = json_plain_prefix(s); i < s.size(); ++i) {
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
  /// `s` quoted, for a text that needs no escape by construction (an enum's name): not scanned.
  void plain_string(std::string_view s) {
    *p_++ = '"';
    copy(s.data(), s.size());
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
  if (json_plain_prefix(s) == s.size()) {
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
