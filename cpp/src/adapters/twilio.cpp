#include "adapters.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "herald/crypto.hpp"

namespace herald::adapters {

namespace {

/// How far Twilio's clock may be behind ours when matching a message to an attempt.
constexpr std::int64_t kClockSkewMs = 60'000;

/// A message resource's date_created (RFC 2822, "Sat, 21 Nov 2026 20:43:11 +0000") in epoch ms;
/// 0 when absent or unreadable, which never counts as recent.
std::int64_t created_ms(const nlohmann::json& m) {
  auto it = m.find("date_created");
  if (it == m.end() || !it->is_string()) return 0;
  std::tm tm{};
  const std::string text = it->get<std::string>();
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S", &tm);
  if (end == nullptr) return 0;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000;  // Twilio writes +0000
}

using json = nlohmann::json;

/// A JSON number or numeric string as text ("" for null and anything else).
std::string code_text(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) return {};
  if (it->is_number_integer() || it->is_number_unsigned()) return it->dump();
  if (it->is_string()) return it->get<std::string>();
  return {};
}

/// Twilio's message status (callbacks and the REST resource) as a receipt status.
ReceiptStatus status_of(std::string_view status, std::string_view error_code) {
  if (status == "delivered") return ReceiptStatus::delivered;
  if (status == "read") return ReceiptStatus::opened;
  if (status == "undelivered" || status == "failed" || status == "canceled") {
    if (error_code == "30005" || error_code == "30006") return ReceiptStatus::bounced_hard;  // unknown / landline
    if (error_code == "21610") return ReceiptStatus::opted_out;                             // replied STOP
    return ReceiptStatus::failed;
  }
  return ReceiptStatus::progress;  // queued, accepted, sending, sent, scheduled, ...
}

/// The forms of a callback URL whose signature Twilio's own validators accept (twilio-python's
/// RequestValidator.validate, twilio-node's validateRequest): the URL with its port removed and
/// with the scheme's default port added when it has none (:443 for https, :80 for http). One of
/// the two is the URL as given. A URL that is not http(s) is used as given only.
std::vector<std::string> signed_url_forms(const std::string& url) {
  const auto sep = url.find("://");
  if (sep == std::string::npos) return {url};
  std::string scheme = url.substr(0, sep);
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  if (scheme != "https" && scheme != "http") return {url};
  const std::size_t authority_begin = sep + 3;
  const std::size_t authority_end = std::min(url.find_first_of("/?#", authority_begin), url.size());
  // The host follows any user:password@; an IPv6 literal's colons sit inside [...].
  std::size_t host_begin = authority_begin;
  if (const auto at = url.rfind('@', authority_end - 1); at != std::string::npos && at >= authority_begin) host_begin = at + 1;
  std::size_t colon = std::string::npos;
  if (host_begin < authority_end && url[host_begin] == '[') {
    const auto close = url.find(']', host_begin);
    if (close != std::string::npos && close + 1 < authority_end && url[close + 1] == ':') colon = close + 1;
  } else if (const auto c = url.find(':', host_begin); c < authority_end) {
    colon = c;
  }
  if (colon == std::string::npos) {
    std::string with_port = url;
    with_port.insert(authority_end, scheme == "https" ? ":443" : ":80");
    return {url, std::move(with_port)};
  }
  std::string without_port = url;
  without_port.erase(colon, authority_end - colon);
  return {url, std::move(without_port)};
}

/// Twilio Programmable Messaging: form POST to the account's Messages resource, Basic auth,
/// StatusCallback receipts signed with X-Twilio-Signature, and message lookups.
class TwilioAdapter final : public Adapter {
 public:
  explicit TwilioAdapter(const ProviderConfig& c)
      : config_(c),
        sid_(require_setting(c, "account_sid")),
        from_(setting_or(c, "from", "")),
        service_sid_(setting_or(c, "messaging_service_sid", "")),
        token_(require_secret(c, "auth_token")) {
    messages_url_ = base_url(c, "https://api.twilio.com") + "/2010-04-01/Accounts/" + crypto::form_encode(sid_) + "/Messages";
  }

  [[nodiscard]] http::Request build(const SendContext& ctx) const override {
    http::Request req;
    req.method = "POST";
    req.url = messages_url_ + ".json";
    req.timeout = std::chrono::milliseconds(config_.timeout_ms);
    req.basic_auth = sid_ + ":" + token_;
    std::string& b = req.body;
    b = "To=" + crypto::form_encode(recipient_field(ctx.notification, "phone"));
    // A messaging service picks the sender itself; with both set, the service wins.
    if (!service_sid_.empty()) {
      b += "&MessagingServiceSid=" + crypto::form_encode(service_sid_);
    } else {
      b += "&From=" + crypto::form_encode(from_);
    }
    b += "&Body=" + crypto::form_encode(ctx.text);
    if (!ctx.receipt_url.empty()) b += "&StatusCallback=" + crypto::form_encode(ctx.receipt_url);
    const std::string id = std::to_string(ctx.notification.id);
    req.headers.reserve(3 + config_.headers.size());
    req.headers.emplace_back("Content-Type: application/x-www-form-urlencoded");
    req.headers.emplace_back("Idempotency-Key: herald-" + id);  // ignored by Twilio; lets a proxy or the sandbox dedupe
    req.headers.emplace_back("X-Herald-Id: " + id);
    for (const auto& [k, v] : config_.headers) req.headers.emplace_back(k + ": " + v);
    return req;
  }

  [[nodiscard]] Outcome classify(const http::Response& r) const override {
    if (r.status == 0) return classify_http(r);
    Outcome out;
    const json body = json::parse(r.body, nullptr, false);
    if (r.status >= 200 && r.status < 300) {
      out.kind = OutcomeKind::accepted;
      if (body.is_object()) out.provider_message_id = code_text(body, "sid");
      return out;
    }
    std::string code, message;
    if (body.is_object()) {
      code = code_text(body, "code");
      if (auto it = body.find("message"); it != body.end() && it->is_string()) message = it->get<std::string>();
    }
    out.provider_code = code;
    out.error = "HTTP " + std::to_string(r.status) + ": " +
                (code.empty() ? short_body(r.body) : "twilio " + code + (message.empty() ? "" : " " + short_body(message)));
    if (code == "21211" || code == "21614") {
      out.kind = OutcomeKind::recipient_invalid;
    } else if (code == "21610") {
      out.kind = OutcomeKind::recipient_opted_out;
    } else if (code == "20003") {
      out.kind = OutcomeKind::permanent;  // authentication: the account's configuration
    } else if (retryable_status(r.status)) {
      set_retryable(out, r);
    } else {
      out.kind = OutcomeKind::permanent;
    }
    return out;
  }

  [[nodiscard]] std::string address(const Notification& n) const override { return recipient_field(n, "phone"); }

  [[nodiscard]] bool serves(std::string_view channel) const override { return channel == "sms"; }

  [[nodiscard]] bool needs_address() const override { return true; }

  [[nodiscard]] bool has_receipts() const override { return true; }

  /// X-Twilio-Signature = base64(HMAC-SHA1(auth_token, full URL + each POST parameter's name and
  /// value, sorted by name)). The URL is tried with and without its port, as Twilio's validators
  /// do: which form Twilio signs depends on how the StatusCallback URL was written.
  [[nodiscard]] ReceiptCheck verify_receipt(const InboundRequest& r) const override {
    const std::string given = r.header("x-twilio-signature");
    if (given.empty()) return {401, "missing X-Twilio-Signature"};
    std::vector<std::pair<std::string, std::string>> params;
    try {
      params = crypto::form_decode(r.body);
    } catch (const std::exception&) {
      return {403, "X-Twilio-Signature does not match (unreadable form body)"};
    }
    std::sort(params.begin(), params.end());
    std::string signed_params;
    for (const auto& [k, v] : params) signed_params.append(k).append(v);
    for (const std::string& url : signed_url_forms(r.url)) {
      const std::string expected = crypto::base64(crypto::hmac_sha1(token_, url + signed_params));
      if (crypto::constant_time_equal(expected, given)) return {};
    }
    return {403, "X-Twilio-Signature does not match"};
  }

  [[nodiscard]] std::vector<Receipt> parse_receipt(const InboundRequest& r) const override {
    std::string sid, status, error_code;
    for (const auto& [k, v] : crypto::form_decode(r.body)) {
      if (k == "MessageSid" || (k == "SmsSid" && sid.empty())) sid = v;
      if (k == "MessageStatus" || (k == "SmsStatus" && status.empty())) status = v;
      if (k == "ErrorCode") error_code = v;
    }
    if (status.empty()) throw std::invalid_argument("Twilio status callback without MessageStatus");
    Receipt rec;
    rec.notification_id = callback_hid(r);
    rec.provider_message_id = std::move(sid);
    rec.status = status_of(status, error_code);
    rec.provider_status = std::move(status);
    rec.error_code = std::move(error_code);
    return {rec};
  }

  [[nodiscard]] std::optional<http::Request> build_lookup(const LookupContext& ctx) const override {
    http::Request req;
    req.method = "GET";
    req.timeout = std::chrono::milliseconds(config_.timeout_ms);
    req.basic_auth = sid_ + ":" + token_;
    if (!ctx.provider_message_id.empty()) {
      req.url = messages_url_ + "/" + crypto::form_encode(ctx.provider_message_id) + ".json";
    } else {
      const std::string phone = recipient_field(ctx.notification, "phone");
      if (phone.empty()) return std::nullopt;
      req.url = messages_url_ + ".json?To=" + crypto::form_encode(phone) + "&PageSize=20";
    }
    for (const auto& [k, v] : config_.headers) req.headers.emplace_back(k + ": " + v);
    return req;
  }

  /// One Message resource (looked up by sid), or a page {"messages":[...]} searched for the
  /// attempt's text sent to the recipient's phone (newest first).
  [[nodiscard]] LookupResult parse_lookup(const http::Response& r, const LookupContext& ctx) const override {
    if (auto failed = lookup_failure(r, ctx)) return *failed;
    LookupResult out;
    const json doc = json::parse(r.body, nullptr, false);
    if (!doc.is_object()) {
      out.error = "unreadable status answer: " + short_body(r.body);
      return out;
    }
    const json* message = nullptr;
    if (auto list = doc.find("messages"); list != doc.end()) {
      if (!list->is_array()) {
        out.error = "unreadable status answer: " + short_body(r.body);
        return out;
      }
      const std::string phone = recipient_field(ctx.notification, "phone");
      for (const json& m : *list) {
        if (!m.is_object()) continue;
        auto body = m.find("body");
        auto to = m.find("to");
        const bool same_text = body != m.end() && body->is_string() && body->get<std::string>() == ctx.text;
        const bool same_to = phone.empty() || (to != m.end() && to->is_string() && to->get<std::string>() == phone);
        // An earlier message with the same text to the same phone is not the attempt in doubt.
        const bool recent = ctx.attempt_started_ms == 0 || created_ms(m) >= ctx.attempt_started_ms - kClockSkewMs;
        if (same_text && same_to && recent) {
          message = &m;
          break;
        }
      }
      if (message == nullptr) {
        out.found = LookupResult::Found::no;
        return out;
      }
    } else {
      message = &doc;
    }
    const std::string status = code_text(*message, "status");
    if (status.empty()) {
      out.error = "unreadable status answer: " + short_body(r.body);
      return out;
    }
    out.found = LookupResult::Found::yes;
    Receipt& rec = out.receipt;
    rec.notification_id = ctx.notification.id;
    rec.provider_message_id = code_text(*message, "sid");
    rec.error_code = code_text(*message, "error_code");
    rec.status = status_of(status, rec.error_code);
    rec.provider_status = status;
    out.provider_message_id = rec.provider_message_id;
    return out;
  }

 private:

  ProviderConfig config_;
  std::string sid_;
  std::string from_;
  std::string service_sid_;
  std::string token_;
  std::string messages_url_;  ///< {url}/2010-04-01/Accounts/{sid}/Messages
};

}  // namespace

std::unique_ptr<Adapter> make_twilio(const ProviderConfig& c) {
  if (setting_or(c, "from", "").empty() && setting_or(c, "messaging_service_sid", "").empty()) {
    throw ConfigError(config_error(c, "settings.from", "is required (or settings.messaging_service_sid)"));
  }
  return std::make_unique<TwilioAdapter>(c);
}

}  // namespace herald::adapters
