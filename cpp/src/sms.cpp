#include "herald/sms.hpp"

#include <array>
#include <cstdint>

namespace herald {

namespace {

/// The GSM 7-bit default alphabet (TS 23.038 6.2.1) as Unicode code points, ESC (0x1B) left out.
constexpr char32_t kBasic[] = {
    U'@', U'£', U'$', U'¥', U'è', U'é', U'ù', U'ì', U'ò', U'Ç', U'\n', U'Ø', U'ø', U'\r', U'Å', U'å',
    U'Δ', U'_', U'Φ', U'Γ', U'Λ', U'Ω', U'Π', U'Ψ', U'Σ', U'Θ', U'Ξ', U'Æ', U'æ', U'ß', U'É',
    U' ', U'!', U'"', U'#', U'¤', U'%', U'&', U'\'', U'(', U')', U'*', U'+', U',', U'-', U'.', U'/',
    U'0', U'1', U'2', U'3', U'4', U'5', U'6', U'7', U'8', U'9', U':', U';', U'<', U'=', U'>', U'?',
    U'¡', U'A', U'B', U'C', U'D', U'E', U'F', U'G', U'H', U'I', U'J', U'K', U'L', U'M', U'N', U'O',
    U'P', U'Q', U'R', U'S', U'T', U'U', U'V', U'W', U'X', U'Y', U'Z', U'Ä', U'Ö', U'Ñ', U'Ü', U'§',
    U'¿', U'a', U'b', U'c', U'd', U'e', U'f', U'g', U'h', U'i', U'j', U'k', U'l', U'm', U'n', U'o',
    U'p', U'q', U'r', U's', U't', U'u', U'v', U'w', U'x', U'y', U'z', U'ä', U'ö', U'ñ', U'ü', U'à',
};

/// The extension table (TS 23.038 6.2.1.1): sent as ESC + a septet, so two septets each.
constexpr char32_t kExtension[] = {U'\f', U'^', U'{', U'}', U'\\', U'[', U'~', U']', U'|', U'€'};

/// Septets of each ASCII character in GSM-7 (0: none, e.g. the backtick), built once from the
/// tables above so the common case is one lookup.
struct AsciiSeptets {
  std::array<std::uint8_t, 128> n{};
  constexpr AsciiSeptets() {
    for (char32_t b : kBasic) {
      if (b < 128) n[b] = 1;
    }
    for (char32_t e : kExtension) {
      if (e < 128) n[e] = 2;
    }
  }
};
constexpr AsciiSeptets kAscii;

/// Septets of one code point in GSM-7: 1, 2 (extension table), or 0 when it has none.
int septets(char32_t c) noexcept {
  if (c < 128) return kAscii.n[c];
  for (char32_t b : kBasic) {
    if (b == c) return 1;
  }
  return c == U'€' ? 2 : 0;  // the one extension character beyond ASCII
}

/// The code point at s[i], advancing i past it; a byte that does not start a well-formed UTF-8
/// sequence is U+FFFD (outside GSM-7, one UTF-16 unit) and advances by one.
char32_t next_code_point(std::string_view s, std::size_t& i) noexcept {
  const auto b = static_cast<std::uint32_t>(static_cast<unsigned char>(s[i]));
  std::size_t len = 0;
  std::uint32_t c = 0;
  if (b < 0x80u) {
    ++i;
    return static_cast<char32_t>(b);
  }
  if ((b & 0xE0u) == 0xC0u) {
    len = 2;
    c = b & 0x1Fu;
  } else if ((b & 0xF0u) == 0xE0u) {
    len = 3;
    c = b & 0x0Fu;
  } else if ((b & 0xF8u) == 0xF0u) {
    len = 4;
    c = b & 0x07u;
  }
  bool ok = len > 0 && i + len <= s.size();
  for (std::size_t k = 1; ok && k < len; ++k) {
    const auto cb = static_cast<std::uint32_t>(static_cast<unsigned char>(s[i + k]));
    if ((cb & 0xC0u) != 0x80u) ok = false;
    c = (c << 6) | (cb & 0x3Fu);
  }
  if (!ok) {
    ++i;
    return U'\uFFFD';
  }
  i += len;
  return static_cast<char32_t>(c);
}

/// Greedy packing into parts of `split` units: a character never straddles two parts.
struct Packer {
  int split;
  int parts = 1;
  int used = 0;
  void add(int n) noexcept {
    if (used + n > split) {
      ++parts;
      used = 0;
    }
    used += n;
  }
};

}  // namespace

SmsSegments sms_segments(std::string_view utf8) noexcept {
  SmsSegments out;
  // One pass as GSM-7; the first character outside it restarts the count as UCS-2.
  Packer gsm{153};
  for (std::size_t i = 0; i < utf8.size();) {
    const int n = septets(next_code_point(utf8, i));
    if (n == 0) {
      out.unicode = true;
      break;
    }
    out.units += n;
    gsm.add(n);
  }
  if (!out.unicode) {
    out.segments = out.units <= 160 ? 1 : gsm.parts;
    return out;
  }
  out.units = 0;
  Packer ucs{67};
  for (std::size_t i = 0; i < utf8.size();) {
    const int n = next_code_point(utf8, i) > 0xFFFF ? 2 : 1;  // beyond the BMP: a surrogate pair
    out.units += n;
    ucs.add(n);
  }
  out.segments = out.units <= 70 ? 1 : ucs.parts;
  return out;
}

}  // namespace herald
