// Apple Push Notification service: one HTTP/2 POST per device token, authorized by an ES256
// provider token (JWT) minted from the team's .p8 key and reused for most of an hour.
#include <charconv>
#include <optional>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "adapters.hpp"
#include "herald/clock.hpp"
#include "herald/crypto.hpp"
#include "herald/errors.hpp"
#include "herald/json_text.hpp"

namespace herald::adapters {

namespace {

using json = nlohmann::json;

constexpr std::string_view default_url = "https://api.push.apple.com";
// APNs refuses tokens older than an hour and answers TooManyProviderTokenUpdates to changes more
// often than every 20 minutes: re-mint after 50, earlier only when APNs refused the token.
constexpr std::int64_t remint_after_ms = 50 * 60 * 1000;
// The longest settings.default_ttl_s accepted: a year, so a typo cannot ask for centuries.
constexpr std::int64_t max_default_ttl_s = 365 * 24 * 3600;
// settings.default_ttl_s absent: send no apns-expiration, so APNs stores the push and retries.
constexpr std::int64_t no_default_ttl = -1;

crypto::PrivateKey parse_ec_key(const ProviderConfig& c) {
  const std::string& pem = require_secret(c, "private_key");
  std::optional<crypto::PrivateKey> key;
  try {
    key.emplace(pem);
  } catch (const std::invalid_argument&) {
    throw ConfigError(config_error(c, "secrets.private_key", "is not a PEM private key"));
  }
  if (!key->is_ec_p256()) throw ConfigError(config_error(c, "secrets.private_key", "is not an EC P-256 key (.p8)"));
  return std::move(*key);
}

http::Request::Version parse_version(const ProviderConfig& c) {
  const std::string v = setting_or(c, "http2", "tls");
  if (v == "tls") return http::Request::Version::any;
  if (v == "prior_knowledge") return http::Request::Version::http2_prior_knowledge;
  if (v == "off") return http::Request::Version::http1_1;
  throw ConfigError(config_error(c, "settings.http2", "must be tls, prior_knowledge or off"));
}

/// settings.default_ttl_s: the lifetime of a notification without expires_at, in whole seconds
/// (0 = APNs tries once and never stores it), or no_default_ttl when absent.
std::int64_t parse_default_ttl(const ProviderConfig& c) {
  auto it = c.settings.find("default_ttl_s");
  if (it == c.settings.end() || it->second.empty()) return no_default_ttl;
  const std::string& v = it->second;
  std::int64_t seconds = 0;
  const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
  if (ec != std::errc() || ptr != v.data() + v.size() || seconds < 0 || seconds > max_default_ttl_s) {
    throw ConfigError(config_error(c, "settings.default_ttl_s", "must be a whole number of seconds from 0 to 31536000"));
  }
  return seconds;
}

class ApnsAdapter final : public Adapter {
 public:
  explicit ApnsAdapter(const ProviderConfig& c)
      : key_(parse_ec_key(c)),
        key_id_(require_setting(c, "key_id")),
        team_id_(require_setting(c, "team_id")),
        topic_(require_setting(c, "topic")),
        push_type_(setting_or(c, "push_type", "alert")),
        version_(parse_version(c)),
        default_ttl_s_(parse_default_ttl(c)),
        url_(base_url(c, default_url) + "/3/device/"),
        timeout_ms_(c.timeout_ms),
        headers_(c.headers) {
    jwt_header_ = json{{"alg", "ES256"}, {"kid", key_id_}}.dump();
  }

  http::Request build(const SendContext& ctx) const override {
    const Notification& n = ctx.notification;
    http::Request req;
    req.method = "POST";
    req.url = url_ + recipient_field(n, "apns_token");
    req.timeout = std::chrono::milliseconds(timeout_ms_);
    req.version = version_;

    const RenderedContent content = render_content(ctx);
    std::string body;
    body.reserve(96 + ctx.text.size());
    body += R"({"aps":{"alert":{)";
    append_push_alert(body, n.data_json, content.title, ctx.text);
    body += '}';
    // APNs has no image field: the app's notification service extension (which iOS runs only for
    // a push with mutable-content set) downloads the URL from the custom key "image".
    if (!content.image.empty()) body += R"(,"mutable-content":1)";
    body += '}';
    if (!content.image.empty()) {
      body += R"(,"image":)";
      detail::append_json_string(body, content.image);
    }
    // The step's data as custom keys beside "aps"; keys herald itself sets are not replaced.
    for (const auto& [key, value] : content.data) {
      if (key == "aps" || key == "herald_id" || (key == "image" && !content.image.empty())) continue;
      body += ',';
      detail::append_json_string(body, key);
      body += ':';
      detail::append_json_string(body, value);
    }
    body += R"(,"herald_id":)";
    body += std::to_string(n.id);
    body += '}';
    req.body = std::move(body);

    // Background pushes must go at priority 5: APNs refuses 10 for them.
    const bool urgent = (n.priority == Priority::critical || n.priority == Priority::high) && push_type_ != "background";
    req.headers.reserve(6 + headers_.size());
    req.headers.emplace_back("content-type: application/json");
    req.headers.emplace_back("authorization: bearer " + provider_token(ctx.now_ms));
    req.headers.emplace_back("apns-topic: " + topic_);
    req.headers.emplace_back("apns-push-type: " + push_type_);
    req.headers.emplace_back(urgent ? "apns-priority: 10" : "apns-priority: 5");
    // apns-expiration is a UNIX time in seconds; 0 tells APNs to try once and never store the push,
    // and without the header APNs stores it and retries. So: expires_at when set, else now plus
    // settings.default_ttl_s when set, else no header (never 0 by accident).
    if (n.expires_at_ms > 0) {
      req.headers.emplace_back("apns-expiration: " + std::to_string(n.expires_at_ms / 1000));
    } else if (default_ttl_s_ == 0) {
      req.headers.emplace_back("apns-expiration: 0");
    } else if (default_ttl_s_ > 0) {
      req.headers.emplace_back("apns-expiration: " + std::to_string(ctx.now_ms / 1000 + default_ttl_s_));
    }
    for (const auto& [k, v] : headers_) req.headers.emplace_back(k + ": " + v);
    return req;
  }

  Outcome classify(const http::Response& r) const override {
    if (r.status == 0) return classify_http(r);
    Outcome out;
    if (r.status == 200) {
      out.kind = OutcomeKind::accepted;
      out.provider_message_id = r.header("apns-id");
      return out;
    }
    std::string reason;
    const json body = json::parse(r.body, nullptr, false);
    if (body.is_object()) {
      auto it = body.find("reason");
      if (it != body.end() && it->is_string()) reason = it->get<std::string>();
    }
    out.error = "HTTP " + std::to_string(r.status) + ": " + (reason.empty() ? short_body(r.body) : reason);
    out.provider_code = reason;
    if (r.status == 410 || (r.status == 400 && (reason == "BadDeviceToken" || reason == "DeviceTokenNotForTopic"))) {
      out.kind = OutcomeKind::recipient_invalid;
    } else if (r.status == 403 && (reason == "ExpiredProviderToken" || reason == "InvalidProviderToken")) {
      force_remint_for(r);
      out.kind = OutcomeKind::retryable;
    } else if (retryable_status(r.status)) {
      set_retryable(out, r);
    } else {
      out.kind = OutcomeKind::permanent;
    }
    return out;
  }

  std::string address(const Notification& n) const override { return recipient_field(n, "apns_token"); }

  [[nodiscard]] bool serves(std::string_view channel) const override { return channel == "push"; }

  [[nodiscard]] bool needs_address() const override { return true; }

 private:
  /// The cached provider token, re-minted after 50 minutes, or at once after APNs refused it.
  const std::string& provider_token(std::int64_t now) const {
    const std::int64_t age = now - minted_at_ms_;
    const bool due = token_.empty() || age >= remint_after_ms || age < 0 || (remint_forced_ && age >= 0);
    if (due) {
      const json claims = {{"iss", team_id_}, {"iat", now / 1000}};
      token_ = crypto::jwt_sign(key_, "ES256", jwt_header_, claims.dump());
      minted_at_ms_ = now;
      remint_forced_ = false;
    }
    return token_;
  }

  /// APNs refused the token a request carried: mint a new one for the next request, unless the
  /// request left before the current token was minted (then the refusal is about an older token).
  void force_remint_for(const http::Response& r) const {
    const std::int64_t sent_at = now_ms() - std::chrono::duration_cast<std::chrono::milliseconds>(r.latency).count();
    if (token_.empty() || minted_at_ms_ > sent_at) return;
    remint_forced_ = true;
  }

  crypto::PrivateKey key_;  // parsed once: signing is the only use
  std::string key_id_;
  std::string team_id_;
  std::string topic_;
  std::string push_type_;
  http::Request::Version version_;
  std::int64_t default_ttl_s_;  ///< no_default_ttl, or seconds for notifications without expires_at
  std::string url_;
  std::int64_t timeout_ms_;
  std::map<std::string, std::string> headers_;
  std::string jwt_header_;

  // Provider-token cache. build() and classify() run on the engine loop thread only, so no lock;
  // mutable because both are const calls.
  mutable std::string token_;
  mutable std::int64_t minted_at_ms_ = 0;
  mutable bool remint_forced_ = false;
};

}  // namespace

std::unique_ptr<Adapter> make_apns(const ProviderConfig& c) { return std::make_unique<ApnsAdapter>(c); }

}  // namespace herald::adapters
