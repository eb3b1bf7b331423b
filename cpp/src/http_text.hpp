#pragma once
// What the two HTTP clients share (curl_client.cpp on libcurl, h1_client.cpp on Beast): their
// limits and texts, and the ASCII helpers for protocol and header names.
#include <algorithm>
#include <cstddef>
#include <string_view>

namespace herald::http::text {

constexpr std::string_view kStoppedError = "client stopped";
/// Bodies past this fail the request: provider answers are small, and an endpoint that streams
/// without end must not exhaust memory.
constexpr std::size_t kMaxBodyBytes = std::size_t{16} << 20;
constexpr std::string_view kBodyTooLarge = "response body larger than 16 MiB";

// ASCII only and inline: protocol names and header names are ASCII, and libc's tolower is a
// call per byte (a thousand instructions per request in the header callback) that also follows
// the process locale.
constexpr char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

inline bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

inline bool starts_with_icase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

constexpr bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Plain loops: find_first_not_of searches the set for every byte, and the header callback trims
// three times per line.
inline std::string_view trim(std::string_view s) {
  std::size_t first = 0;
  std::size_t last = s.size();
  while (first < last && is_space(s[first])) ++first;
  while (last > first && is_space(s[last - 1])) --last;
  return s.substr(first, last - first);
}

}  // namespace herald::http::text
