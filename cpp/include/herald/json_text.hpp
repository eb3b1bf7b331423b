#pragma once
/// Writing JSON text directly into a string, for the hot paths (log lines, request bodies) where
/// building a nlohmann::json document first would cost an allocation per field.
#include <string>
#include <string_view>

namespace herald::detail {

/// Appends `s` as a quoted JSON string. UTF-8 passes through; control characters are escaped.
inline void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

}  // namespace herald::detail
