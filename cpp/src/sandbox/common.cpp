// Helpers shared by the sandbox's handlers: header and query look-ups, response builders, fault
// rendering in each provider's error format, magic addresses and herald's signature.
#include <algorithm>
#include <cstdio>
#include <ctime>

#include "herald/crypto.hpp"
#include "routes.hpp"

namespace herald::sandbox::detail {

using json = nlohmann::json;

namespace {

char lower_ascii(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string local_part(std::string_view email) {
  const auto at = email.find('@');
  std::string out(email.substr(0, at));
  for (char& c : out) c = lower_ascii(c);
  return out;
}

}  // namespace

std::string header_of(const ServerRequest& req, std::string_view lower_name) {
  for (const auto& [name, value] : req.headers) {
    if (name.size() != lower_name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size() && same; ++i) same = lower_ascii(name[i]) == lower_name[i];
    if (same) return value;
  }
  return {};
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  for (auto& [key, value] : crypto::form_decode(query)) {
    if (key == name) return std::move(value);
  }
  return std::nullopt;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

bool starts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string rfc2822(std::int64_t epoch_ms_value) {
  const std::time_t t = static_cast<std::time_t>(epoch_ms_value / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  // %a and %b are locale-dependent; spell them out so the answer is always English.
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

ServerResponse json_response(unsigned status, std::string body) {
  ServerResponse res;
  res.status = status;
  res.content_type = "application/json";
  res.body = std::move(body);
  return res;
}

ServerResponse text_response(unsigned status, std::string body, std::string content_type) {
  ServerResponse res;
  res.status = status;
  res.content_type = std::move(content_type);
  res.body = std::move(body);
  return res;
}

std::string herald_error_body(std::string_view code, std::string_view message) {
  json err = {{"code", code}};
  if (!message.empty()) err["message"] = message;
  return dump(json{{"error", std::move(err)}});
}

ServerResponse herald_error(unsigned status, std::string_view code, std::string_view message) {
  return json_response(status, herald_error_body(code, message));
}

ServerResponse method_not_allowed(std::string_view allow) {
  ServerResponse res = herald_error(405, "method_not_allowed", "allowed: " + std::string(allow));
  res.headers.emplace_back("Allow", std::string(allow));
  return res;
}

namespace {

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

/// Header names whose values are credentials (names lower-case). Idempotency keys are not.
bool is_secret_header(std::string_view name) {
  if (name == "idempotency-key") return false;
  return name == "authorization" || name == "proxy-authorization" || name == "cookie" || contains(name, "signature") ||
         contains(name, "token") || contains(name, "secret") || contains(name, "api-key") || contains(name, "apikey") ||
         contains(name, "password") || name.ends_with("-key") || name.ends_with("_key");
}

}  // namespace

std::string mask_secret(std::string_view value) {
  std::string out;
  // Keep an auth scheme ("Bearer ", "Basic ") readable: it says what kind of credential came.
  if (const auto space = value.find(' '); space != std::string_view::npos && space < 16) {
    out.assign(value.substr(0, space + 1));
    value.remove_prefix(space + 1);
  }
  // Short secrets show nothing of themselves; longer ones at most 4 characters.
  if (value.size() >= 12) out.append(value.substr(0, 4));
  out += "\xe2\x80\xa6 (" + std::to_string(value.size()) + " chars)";
  return out;
}

std::vector<std::pair<std::string, std::string>> recorded_headers(const ServerRequest& req) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, value] : req.headers) {
    std::string key = name;
    for (char& c : key) c = lower_ascii(c);
    if (!starts_with(key, "x-") && key != "idempotency-key") continue;
    // x-api-key, x-auth-token, x-*-signature: as masked here as on the page (no record holds a secret).
    const std::string shown = is_secret_header(key) ? mask_secret(value) : value;
    auto same = std::find_if(out.begin(), out.end(), [&](const auto& h) { return h.first == key; });
    if (same != out.end()) {
      same->second += ", ";
      same->second += shown;
    } else {
      out.emplace_back(std::move(key), shown);
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> masked_headers(const ServerRequest& req) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(req.headers.size());
  for (const auto& [name, value] : req.headers) {
    std::string key = name;
    for (char& c : key) c = lower_ascii(c);
    const bool secret = is_secret_header(key);
    out.emplace_back(std::move(key), secret ? mask_secret(value) : value);
  }
  return out;
}

void note_request(Record& rec, const ServerRequest& req) {
  rec.method = req.method;
  rec.request_headers = masked_headers(req);
}

namespace {

/// FCM's canonical status name for an HTTP status.
std::string google_status(unsigned status) {
  switch (status) {
    case 400: return "INVALID_ARGUMENT";
    case 401: return "UNAUTHENTICATED";
    case 403: return "PERMISSION_DENIED";
    case 404: return "NOT_FOUND";
    case 429: return "RESOURCE_EXHAUSTED";
    case 503: return "UNAVAILABLE";
    default: return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
  }
}

/// FCM's errorCode for a fault without its own code.
std::string fcm_error_code(unsigned status) {
  switch (status) {
    case 400: return "INVALID_ARGUMENT";
    case 401: return "THIRD_PARTY_AUTH_ERROR";
    case 403: return "SENDER_ID_MISMATCH";
    case 404: return "UNREGISTERED";
    case 429: return "QUOTA_EXCEEDED";
    case 503: return "UNAVAILABLE";
    default: return "INTERNAL";
  }
}

/// APNs' reason for a fault without its own code.
std::string apns_reason(unsigned status) {
  switch (status) {
    case 400: return "BadRequest";
    case 403: return "Forbidden";
    case 410: return "Unregistered";
    case 429: return "TooManyRequests";
    case 503: return "ServiceUnavailable";
    default: return "InternalServerError";
  }
}

}  // namespace

ServerResponse fault_response(Dialect dialect, const Verdict& v) {
  ServerResponse res;
  const bool injected = v.error_code == "injected";
  switch (dialect) {
    case Dialect::herald:
      res = herald_error(v.status, v.error_code);
      break;
    case Dialect::twilio: {
      // Twilio's codes are numbers; a non-numeric fault code keeps its text in the message.
      int code = v.status == 429 ? 20429 : v.status == 503 ? 20503 : 20500;
      if (v.custom_code) {
        try {
          code = std::stoi(v.error_code);
        } catch (const std::exception&) {
        }
      }
      res = json_response(v.status, dump(json{{"code", code},
                                              {"message", "sandbox fault: " + v.error_code},
                                              {"more_info", "https://www.twilio.com/docs/errors/" + std::to_string(code)},
                                              {"status", v.status}}));
      break;
    }
    case Dialect::sendgrid:
      res = json_response(
          v.status, dump(json{{"errors", json::array({{{"message", injected ? "sandbox fault" : v.error_code},
                                                        {"field", nullptr},
                                                        {"help", nullptr}}})}}));
      break;
    case Dialect::fcm: {
      const std::string code = v.custom_code ? v.error_code : fcm_error_code(v.status);
      res = json_response(
          v.status,
          dump(json{{"error",
                     {{"code", v.status},
                      {"message", "sandbox fault: " + v.error_code},
                      {"status", google_status(v.status)},
                      {"details", json::array({{{"@type", "type.googleapis.com/google.firebase.fcm.v1.FcmError"},
                                                {"errorCode", code}}})}}}}));
      break;
    }
    case Dialect::apns:
      res = json_response(v.status, dump(json{{"reason", v.custom_code ? v.error_code : apns_reason(v.status)}}));
      break;
    case Dialect::slack:
      res = text_response(v.status, v.custom_code ? v.error_code : v.status == 429 ? "rate_limited" : injected ? "injected" : v.error_code);
      break;
  }
  if (v.status < 200 || v.status == 204 || v.status == 304) res.body.clear();
  if (v.retry_after_s >= 0) res.headers.emplace_back("Retry-After", std::to_string(v.retry_after_s));
  res.delay = v.latency;
  return res;
}

Outcome email_outcome(std::string_view email) {
  const std::string local = local_part(email);
  if (local == "bounce") return Outcome::bounce;
  if (local == "soft-bounce") return Outcome::soft_bounce;
  if (local == "unsubscribe") return Outcome::unsubscribe;
  if (local == "open") return Outcome::open;
  return Outcome::delivered;
}

Outcome phone_outcome(std::string_view phone) {
  return phone == "+15005550006" ? Outcome::undelivered : Outcome::delivered;
}

std::string herald_signature(std::string_view secret, std::int64_t t, std::string_view body) {
  std::string data = std::to_string(t);
  data += '.';
  data.append(body);
  return "t=" + std::to_string(t) + ",v1=" + crypto::hex(crypto::hmac_sha256(secret, data));
}

}  // namespace herald::sandbox::detail
