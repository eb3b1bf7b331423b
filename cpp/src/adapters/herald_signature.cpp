#include "herald_signature.hpp"

#include <charconv>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "herald/crypto.hpp"

namespace herald::adapters::herald_signature {

namespace {

using json = nlohmann::json;

std::string mac_hex(std::string_view secret, std::string_view t, std::string_view body) {
  std::string signed_text;
  signed_text.reserve(t.size() + 1 + body.size());
  signed_text.append(t).append(".").append(body);
  return crypto::hex(crypto::hmac_sha256(secret, signed_text));
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

/// A JSON string or number as text ("" for anything else).
std::string scalar_text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_number_integer() || j.is_number_unsigned()) return j.dump();
  return {};
}

Id id_of(const json& j) {
  const std::string s = scalar_text(j);
  Id id = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
  return ec == std::errc() && ptr == s.data() + s.size() && id > 0 ? id : 0;
}

Receipt receipt_of(const json& o) {
  if (!o.is_object()) throw std::invalid_argument("a receipt must be a JSON object");
  Receipt r;
  if (auto it = o.find("herald_id"); it != o.end()) r.notification_id = id_of(*it);
  if (auto it = o.find("message_id"); it != o.end()) r.provider_message_id = scalar_text(*it);
  auto st = o.find("status");
  if (st == o.end() || !st->is_string()) throw std::invalid_argument("a receipt needs a \"status\" string");
  r.provider_status = st->get<std::string>();
  r.status = status_of(r.provider_status);
  if (auto it = o.find("error_code"); it != o.end()) r.error_code = scalar_text(*it);
  return r;
}

}  // namespace

std::string sign(std::string_view secret, std::int64_t unix_s, std::string_view body) {
  const std::string t = std::to_string(unix_s);
  return "t=" + t + ",v1=" + mac_hex(secret, t, body);
}

ReceiptCheck verify(std::string_view secret, std::string_view header, std::string_view body, std::int64_t now_ms) {
  if (header.empty()) return {401, "missing X-Herald-Signature"};
  std::string_view t;
  std::vector<std::string_view> macs;
  while (!header.empty()) {
    const auto comma = header.find(',');
    std::string_view part = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    const auto eq = part.find('=');
    if (eq == std::string_view::npos) return {401, "malformed X-Herald-Signature"};
    const std::string_view key = part.substr(0, eq), value = part.substr(eq + 1);
    if (key == "t") {
      t = value;
    } else if (key == "v1") {
      macs.push_back(value);
    }  // other schemes are ignored, as newer senders may add them
  }
  if (!all_digits(t) || t.size() > 12 || macs.empty()) return {401, "malformed X-Herald-Signature"};
  std::int64_t unix_s = 0;
  std::from_chars(t.data(), t.data() + t.size(), unix_s);
  const std::string expected = mac_hex(secret, t, body);
  bool match = false;
  for (std::string_view m : macs) {
    std::string lower(m);
    for (char& c : lower) {
      if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    }
    match = crypto::constant_time_equal(expected, lower) || match;
  }
  if (!match) return {403, "X-Herald-Signature does not match"};
  const std::int64_t skew = now_ms - unix_s * 1000;
  if (skew > tolerance_ms || skew < -tolerance_ms) return {403, "stale X-Herald-Signature (t too far from now)"};
  return {};
}

ReceiptStatus status_of(std::string_view word) noexcept {
  if (word == "delivered") return ReceiptStatus::delivered;
  if (word == "failed") return ReceiptStatus::failed;
  if (word == "bounced_soft") return ReceiptStatus::bounced_soft;
  if (word == "bounced_hard") return ReceiptStatus::bounced_hard;
  if (word == "opened") return ReceiptStatus::opened;
  if (word == "opted_out") return ReceiptStatus::opted_out;
  return ReceiptStatus::progress;  // sent, accepted, queued, and words added later
}

std::vector<Receipt> parse_receipts(const std::string& body) {
  const json doc = json::parse(body, nullptr, false);
  std::vector<Receipt> out;
  if (doc.is_object()) {
    out.push_back(receipt_of(doc));
  } else if (doc.is_array()) {
    out.reserve(doc.size());
    for (const json& o : doc) out.push_back(receipt_of(o));
  } else {
    throw std::invalid_argument("not a JSON receipt (an object or an array of objects)");
  }
  return out;
}

}  // namespace herald::adapters::herald_signature
