// validate() and is_smtp_url() (http_request_checks.hpp), and redact() (herald/http_client.hpp).
#include "http_request_checks.hpp"

#include "herald/crypto.hpp"
#include "http_text.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace herald::http {

namespace {

using text::ascii_lower;
using text::starts_with_icase;
using text::trim;

constexpr bool ascii_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/// RFC 9110 token characters: what a method name may consist of.
bool is_token(std::string_view s) {
  constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
    return ascii_alnum(c) || kExtra.find(c) != kExtra.npos;
  });
}

// Two memchr scans (vectorised in libc): a byte-wise loop cost ~1k instructions per request over
// the URL and headers, find_first_of more still.
bool has_line_break(std::string_view s) {
  return s.find('\n') != std::string_view::npos || s.find('\r') != std::string_view::npos;
}

// Secret redaction for error text.

/// The "user:password" part of scheme://user:password@host/..., or empty.
std::string_view url_userinfo(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == url.npos) return {};
  const auto rest = url.substr(scheme_end + 3);
  const auto authority = rest.substr(0, rest.find_first_of("/?#"));
  const auto at = authority.rfind('@');
  return at == authority.npos ? std::string_view{} : authority.substr(0, at);
}

/// Shorter values are not treated as secrets: a header value of "1" or a user name "bob" would
/// otherwise be masked inside IP addresses, ports and words ("[redacted]27.0.0.[redacted]").
constexpr std::size_t kMinSecretSize = 8;

void add_secret(std::vector<std::string>& out, std::string_view value) {
  if (value.size() >= kMinSecretSize) out.emplace_back(value);
}

void add_credential(std::vector<std::string>& out, std::string_view credential) {
  add_secret(out, credential);
  if (const auto colon = credential.find(':'); colon != credential.npos) {
    add_secret(out, credential.substr(0, colon));
    add_secret(out, credential.substr(colon + 1));
  }
}

/// Whether a header of this name carries a credential (Authorization, X-Api-Key, a token, a
/// signature...). Content-Type, Idempotency-Key and X-Herald-Id do not.
bool is_secret_header(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), ascii_lower);
  if (lower == "idempotency-key") return false;
  for (const std::string_view word : {"auth", "key", "token", "secret", "password", "signature", "cookie",
                                      "session", "credential"}) {
    if (lower.find(word) != lower.npos) return true;
  }
  return false;
}

bool is_word_char(char c) { return ascii_alnum(c); }

}  // namespace

bool is_smtp_url(std::string_view url) {
  return starts_with_icase(url, "smtp://") || starts_with_icase(url, "smtps://");
}

std::string redact(std::string text, const Request& request) {
  std::vector<std::string> secrets;
  const auto userinfo = url_userinfo(request.url);
  add_credential(secrets, userinfo);
  add_credential(secrets, crypto::percent_decode(userinfo, false));
  add_credential(secrets, request.basic_auth);
  for (const auto& header : request.headers) {
    const auto colon = header.find(':');
    if (colon == header.npos || !is_secret_header(trim(std::string_view(header).substr(0, colon)))) continue;
    const auto value = trim(std::string_view(header).substr(colon + 1));
    add_secret(secrets, value);
    // "Bearer <token>", "Basic <base64>": the credential alone, too.
    if (const auto space = value.find(' '); space != value.npos) add_secret(secrets, trim(value.substr(space + 1)));
  }
  // Longest first, so a secret that contains another is removed whole.
  std::sort(secrets.begin(), secrets.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  constexpr std::string_view kMask = "[redacted]";
  for (const auto& secret : secrets) {
    for (auto pos = text.find(secret); pos != text.npos;) {
      const auto end = pos + secret.size();
      // Whole tokens only: a match that runs on into letters or digits is part of another word.
      const bool starts_token = pos == 0 || !is_word_char(text[pos - 1]) || !is_word_char(secret.front());
      const bool ends_token = end == text.size() || !is_word_char(text[end]) || !is_word_char(secret.back());
      if (starts_token && ends_token) {
        text.replace(pos, secret.size(), kMask);
        pos = text.find(secret, pos + kMask.size());
      } else {
        pos = text.find(secret, pos + 1);
      }
    }
  }
  return text;
}

std::string_view validate(const Request& req) {
  if (!is_token(req.method)) return "invalid request method";
  if (has_line_break(req.url)) return "invalid url";
  for (const auto& header : req.headers) {
    if (has_line_break(header)) return "invalid request header";
  }
  if (has_line_break(req.basic_auth)) return "invalid basic_auth";
  // curl sends the envelope verbatim in MAIL FROM / RCPT TO: a line break would add commands.
  if (has_line_break(req.mail_from)) return "invalid mail_from";
  for (const auto& rcpt : req.mail_rcpt) {
    if (has_line_break(rcpt)) return "invalid mail_rcpt";
  }
  if (is_smtp_url(req.url) && req.mail_rcpt.empty()) return "smtp request without mail_rcpt";
  return {};
}

}  // namespace herald::http
