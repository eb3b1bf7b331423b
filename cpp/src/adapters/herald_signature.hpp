#pragma once
/// herald's own receipt scheme, shared by the sandbox and webhook kinds: the X-Herald-Signature
/// HMAC ("t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>") and herald's JSON receipts and
/// status answers. Internal to the core.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "herald/provider.hpp"

namespace herald::adapters::herald_signature {

/// How far (either way) a signature's timestamp may be from now.
inline constexpr std::int64_t tolerance_ms = 300'000;

/// The X-Herald-Signature value for `body` signed at `unix_s`: "t=<s>,v1=<hex>".
[[nodiscard]] std::string sign(std::string_view secret, std::int64_t unix_s, std::string_view body);

/// Checks an X-Herald-Signature value: missing or malformed → 401; a `t` more than 300 s from
/// `now_ms` → 403 (stale); no `v1` matching the body → 403. {0, ""} when genuine.
[[nodiscard]] ReceiptCheck verify(std::string_view secret, std::string_view header, std::string_view body,
                                  std::int64_t now_ms);

/// A status word of herald's JSON ("sent", "delivered", "failed", "bounced_soft", "bounced_hard",
/// "opened", "opted_out"; "accepted"/"queued" and unknown words are progress).
[[nodiscard]] ReceiptStatus status_of(std::string_view word) noexcept;

/// The receipts in herald's JSON receipt body: one object or an array of them
/// ({"herald_id", "message_id", "status", "error_code"}). Throws std::invalid_argument when the
/// body is not such JSON.
[[nodiscard]] std::vector<Receipt> parse_receipts(const std::string& body);

}  // namespace herald::adapters::herald_signature
