#include "herald/notification.hpp"

#include "herald/event.hpp"

#include <array>

#include "herald/errors.hpp"

namespace herald {

namespace {
constexpr std::size_t max_name = 128;
constexpr std::size_t max_key = 256;

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.' || c == ':';
}

/// The field's full name, built only for an error: validation runs for every notification.
std::string field_name(std::string_view prefix, const char* field) { return std::string(prefix) + field; }

void check_name(std::string_view prefix, const char* field, const std::string& value, bool required) {
  const auto name = [&] { return field_name(prefix, field); };
  if (value.empty()) {
    if (required) throw ValidationError(name(), "is required");
    return;
  }
  if (value.size() > max_name) throw ValidationError(name(), "longer than 128 characters");
  for (char c : value) {
    if (!is_name_char(c)) {
      throw ValidationError(name(), "may contain only letters, digits and _ - . : (got '" + value + "')");
    }
  }
}

void check_key(std::string_view prefix, const char* field, const std::string& value, bool required) {
  const auto name = [&] { return field_name(prefix, field); };
  if (value.empty()) {
    if (required) throw ValidationError(name(), "is required");
    return;
  }
  if (value.size() > max_key) throw ValidationError(name(), "longer than 256 bytes");
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20) throw ValidationError(name(), "contains a control character");
  }
}

void check_object(std::string_view prefix, const char* field, const std::string& json) {
  const auto name = [&] { return field_name(prefix, field); };
  if (json.size() > max_payload_bytes) throw ValidationError(name(), "larger than 256 KiB");
  if (json.empty() || json.front() != '{') throw ValidationError(name(), "must be a JSON object");
}

void check_time(std::string_view prefix, const char* field, std::int64_t ms) {
  if (ms < 0 || ms > max_epoch_s * 1000 + 999) {
    throw ValidationError(field_name(prefix, field), "must be a time from 1970-01-01 to 9999-12-31 (epoch ms " +
                                                           std::to_string(ms) + ")");
  }
}

std::uint64_t fnv1a(std::uint64_t h, std::string_view s) noexcept {
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);  // the byte's value, whatever char's signedness
    h *= 1099511628211ULL;
  }
  h ^= 0xff;  // field separator so ("ab","c") != ("a","bc")
  h *= 1099511628211ULL;
  return h;
}
}  // namespace

bool is_terminal(State s) noexcept {
  return s == State::completed || s == State::expired || s == State::dead_lettered || s == State::cancelled ||
         s == State::suppressed || s == State::skipped;
}

std::string_view to_string(State s) noexcept {
  static constexpr std::array<std::string_view, 10> names = {
      "queued", "routed", "sending", "retry_scheduled", "completed", "expired", "dead_lettered", "cancelled",
      "suppressed", "skipped"};
  const auto i = static_cast<std::size_t>(s);
  return i < names.size() ? names[i] : "unknown";
}

std::string_view to_string(ErrorClass c) noexcept {
  static constexpr std::array<std::string_view, error_class_count> names = {
      "",         "transport", "timeout", "rate_limited", "provider_error", "recipient_invalid", "opted_out",
      "suppressed", "template_error", "expired", "cancelled", "no_provider", "routing_error"};
  const auto i = static_cast<std::size_t>(c);
  return i < names.size() ? names[i] : "unknown";
}

std::string_view to_string(Priority p) noexcept {
  static constexpr std::array<std::string_view, 4> names = {"critical", "high", "normal", "bulk"};
  const auto i = static_cast<std::size_t>(p);
  return i < names.size() ? names[i] : "unknown";
}

Priority parse_priority(std::string_view name) {
  if (name == "critical") return Priority::critical;
  if (name == "high") return Priority::high;
  if (name == "normal") return Priority::normal;
  if (name == "bulk") return Priority::bulk;
  throw ValidationError("priority", "must be one of critical, high, normal, bulk (got '" + std::string(name) + "')");
}

void validate(const Notification& n, std::int64_t now, std::string_view prefix) {
  check_name(prefix, "tenant", n.tenant, true);
  check_name(prefix, "type", n.type, true);
  check_key(prefix, "recipient.id", n.recipient_id, true);
  check_object(prefix, "recipient", n.recipient_json);
  check_object(prefix, "data", n.data_json);
  check_key(prefix, "idempotency_key", n.idempotency_key, false);
  check_key(prefix, "ordering_key", n.ordering_key, false);
  if (static_cast<int>(n.priority) >= priority_count) {
    throw ValidationError(std::string(prefix) + "priority", "unknown priority");
  }
  check_time(prefix, "send_at", n.send_at_ms);
  check_time(prefix, "expires_at", n.expires_at_ms);
  if (n.expires_at_ms != 0) {
    if (n.expires_at_ms <= now) throw ValidationError(std::string(prefix) + "expires_at", "is already in the past");
    if (n.send_at_ms != 0 && n.expires_at_ms <= n.send_at_ms) {
      throw ValidationError(std::string(prefix) + "expires_at", "must be later than send_at");
    }
  }
}

std::uint64_t content_hash(const Notification& n) noexcept {
  std::uint64_t h = 1469598103934665603ULL;
  h = fnv1a(h, n.tenant);
  h = fnv1a(h, n.type);
  h = fnv1a(h, n.recipient_json);
  h = fnv1a(h, n.data_json);
  h = fnv1a(h, to_string(n.priority));
  h = fnv1a(h, n.ordering_key);
  // send_at and expires_at are left out on purpose: a retried request computes them from "now".
  return h & 0x7fffffffffffffffULL;  // fits SQLite's signed INTEGER
}

}  // namespace herald
