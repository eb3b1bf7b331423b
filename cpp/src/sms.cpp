#include "herald/sms.hpp"

#include <cstdint>
#include <vector>

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

/// Septets of one code point in GSM-7: 1, 2 (extension table), or 0 when it has none.
int septets(char32_t c) noexcept {
  for (char32_t b : kBasic) {
    if (b == c) return 1;
  }
  for (char32_t e : kExtension) {
    if (e == c) return 2;
  }
  return 0;
}

/// The code points of `s`; a byte that does not start a well-formed UTF-8 sequence becomes
/// U+FFFD (outside GSM-7, one UTF-16 unit).
std::vector<char32_t> decode(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<std::uint32_t>(static_cast<unsigned char>(s[i]));
    std::size_t len = 0;
    std::uint32_t c = 0;
    if (b < 0x80u) {
      len = 1;
      c = b;
    } else if ((b & 0xE0u) == 0xC0u) {
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
      out.push_back(U'\uFFFD');
      ++i;
      continue;
    }
    out.push_back(static_cast<char32_t>(c));
    i += len;
  }
  return out;
}

/// Parts needed for characters of the given sizes: all in one part when they fit `single`,
/// else filled greedily into parts of `split` (a character never straddles two parts).
int parts(const std::vector<int>& sizes, int total, int single, int split) noexcept {
  if (total <= single) return 1;
  int count = 1, used = 0;
  for (int n : sizes) {
    if (used + n > split) {
      ++count;
      used = 0;
    }
    used += n;
  }
  return count;
}

}  // namespace

SmsSegments sms_segments(std::string_view utf8) {
  SmsSegments out;
  const std::vector<char32_t> text = decode(utf8);
  std::vector<int> sizes;
  sizes.reserve(text.size());
  for (char32_t c : text) {
    const int n = septets(c);
    if (n == 0) {
      out.unicode = true;
      break;
    }
    sizes.push_back(n);
    out.units += n;
  }
  if (!out.unicode) {
    out.segments = parts(sizes, out.units, 160, 153);
    return out;
  }
  sizes.clear();
  out.units = 0;
  for (char32_t c : text) {
    const int n = c > 0xFFFF ? 2 : 1;  // a surrogate pair beyond the BMP
    sizes.push_back(n);
    out.units += n;
  }
  out.segments = parts(sizes, out.units, 70, 67);
  return out;
}

}  // namespace herald
