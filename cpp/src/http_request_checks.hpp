#pragma once
// What a Request may carry, checked before either HTTP client sends it (its fields go on the wire
// verbatim). http_request_checks.cpp also holds redact() (herald/http_client.hpp), which keeps the
// request's secrets out of error text. Internal to the core.
#include <string_view>

#include "herald/http_client.hpp"

namespace herald::http {

/// Why `req` may not be sent, or empty. Both clients would send these fields verbatim, so a line
/// break would let a caller inject header lines (or SMTP commands).
[[nodiscard]] std::string_view validate(const Request& req);

/// smtp:// and smtps:// URLs are mail submissions, not HTTP requests.
[[nodiscard]] bool is_smtp_url(std::string_view url);

}  // namespace herald::http
