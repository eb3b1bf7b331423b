// Firebase Cloud Messaging (HTTP v1): OAuth2 access tokens minted from a service-account key
// (RS256 JWT bearer grant), one POST per message, errors classified by FCM's errorCode.
#include <algorithm>
#include <cctype>
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

constexpr std::string_view default_url = "https://fcm.googleapis.com";
constexpr std::string_view default_token_url = "https://oauth2.googleapis.com/token";
constexpr std::string_view scope = "https://www.googleapis.com/auth/firebase.messaging";
constexpr std::int64_t assertion_lifetime_s = 3600;
constexpr std::int64_t refresh_margin_ms = 5 * 60 * 1000;  // refresh when the token expires within this
constexpr std::int64_t first_backoff_ms = 1000;
constexpr std::int64_t max_backoff_ms = 60 * 1000;

/// The fields of a service-account key the adapter uses.
struct ServiceAccount {
  std::string client_email;
  std::string private_key;
  std::string private_key_id;  ///< optional: becomes the JWT "kid"
  std::string token_uri;       ///< optional
  std::string project_id;      ///< optional when settings.project_id is given
};

/// Parses the key file's text. Errors name the missing field, never a value.
ServiceAccount parse_service_account(const ProviderConfig& c) {
  const std::string& text = require_secret(c, "service_account");
  const json doc = json::parse(text, nullptr, false);
  if (!doc.is_object()) throw ConfigError(config_error(c, "secrets.service_account", "is not a JSON object"));
  auto str = [&](const char* field, bool required) -> std::string {
    auto it = doc.find(field);
    if (it != doc.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) return it->get<std::string>();
    if (required) throw ConfigError(config_error(c, "secrets.service_account", std::string(field) + " is missing"));
    return {};
  };
  ServiceAccount sa;
  sa.client_email = str("client_email", true);
  sa.private_key = str("private_key", true);
  sa.private_key_id = str("private_key_id", false);
  sa.token_uri = str("token_uri", false);
  sa.project_id = str("project_id", false);
  return sa;
}

crypto::PrivateKey parse_rsa_key(const ProviderConfig& c, const std::string& pem) {
  std::optional<crypto::PrivateKey> key;
  try {
    key.emplace(pem);
  } catch (const std::invalid_argument&) {
    throw ConfigError(config_error(c, "secrets.service_account", "private_key is not a PEM private key"));
  }
  if (!key->is_rsa()) throw ConfigError(config_error(c, "secrets.service_account", "private_key is not an RSA key"));
  return std::move(*key);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return s;
}

class FcmAdapter final : public Adapter {
 public:
  explicit FcmAdapter(const ProviderConfig& c) : FcmAdapter(c, parse_service_account(c)) {}

  http::Request build(const SendContext& ctx) const override {
    const Notification& n = ctx.notification;
    http::Request req;
    req.method = "POST";
    req.url = send_url_;
    req.timeout = std::chrono::milliseconds(timeout_ms_);

    const RenderedContent content = render_content(ctx);
    std::string body;
    body.reserve(160 + ctx.text.size());
    body += R"({"message":{"token":)";
    detail::append_json_string(body, recipient_field(n, "fcm_token"));
    body += R"(,"notification":{)";
    append_push_alert(body, n.data_json, content.title, ctx.text);
    if (!content.image.empty()) {
      body += R"(,"image":)";
      detail::append_json_string(body, content.image);
    }
    body += R"(},"data":{)";
    // FCM's data values are strings; the step's keys first, herald_id last (it cannot be replaced).
    for (const auto& [key, value] : content.data) {
      if (key == "herald_id") continue;
      detail::append_json_string(body, key);
      body += ':';
      detail::append_json_string(body, value);
      body += ',';
    }
    body += R"("herald_id":")";
    body += std::to_string(n.id);
    body += "\"}";
    if (n.expires_at_ms > 0) {
      // Time left, rounded up, so FCM drops the message when herald would have expired it.
      const std::int64_t left_ms = std::max<std::int64_t>(0, n.expires_at_ms - ctx.now_ms);
      body += R"(,"android":{"ttl":")";
      body += std::to_string((left_ms + 999) / 1000);
      body += "s\"}";
    }
    if (n.expires_at_ms > 0 || !content.image.empty()) {
      body += R"(,"apns":{)";
      if (n.expires_at_ms > 0) {
        // android.ttl does not reach Apple devices: FCM passes apns.headers on to APNs, where
        // apns-expiration is the UNIX time in seconds (as the apns adapter sends it).
        body += R"("headers":{"apns-expiration":")";
        body += std::to_string(n.expires_at_ms / 1000);
        body += "\"}";
      }
      if (!content.image.empty()) {
        // Apple devices show notification.image only through the app's notification service
        // extension, which iOS runs for a push with mutable-content set.
        if (n.expires_at_ms > 0) body += ',';
        body += R"("payload":{"aps":{"mutable-content":1}})";
      }
      body += '}';
    }
    body += "}}";
    req.body = std::move(body);

    req.headers.reserve(3 + headers_.size());
    req.headers.emplace_back("Content-Type: application/json");
    req.headers.emplace_back("Authorization: Bearer " + access_token_);
    req.headers.emplace_back("Idempotency-Key: herald-" + std::to_string(n.id));
    for (const auto& [k, v] : headers_) req.headers.emplace_back(k + ": " + v);
    return req;
  }

  Outcome classify(const http::Response& r) const override {
    if (r.status == 0) return classify_http(r);
    Outcome out;
    const json body = json::parse(r.body, nullptr, false);
    if (r.status >= 200 && r.status < 300) {
      out.kind = OutcomeKind::accepted;
      if (body.is_object()) {
        auto it = body.find("name");
        if (it != body.end() && it->is_string()) out.provider_message_id = it->get<std::string>();
      }
      return out;
    }
    // {"error":{"code":404,"message":"…","status":"NOT_FOUND","details":[{"@type":"…FcmError","errorCode":"UNREGISTERED"}]}}
    std::string code;
    std::string status;
    std::string message;
    if (body.is_object()) {
      auto err = body.find("error");
      if (err != body.end() && err->is_object()) {
        if (auto s = err->find("status"); s != err->end() && s->is_string()) status = s->get<std::string>();
        if (auto m = err->find("message"); m != err->end() && m->is_string()) message = m->get<std::string>();
        if (auto d = err->find("details"); d != err->end() && d->is_array()) {
          for (const auto& item : *d) {
            if (!item.is_object()) continue;
            auto ec = item.find("errorCode");
            if (ec != item.end() && ec->is_string()) {
              code = ec->get<std::string>();
              break;
            }
          }
        }
      }
    }
    if (code.empty()) code = status;
    out.provider_code = code;
    out.error = "HTTP " + std::to_string(r.status) + ": " + (code.empty() ? short_body(r.body) : code);
    if (!message.empty() && !code.empty()) out.error += " (" + short_body(message).substr(0, 120) + ")";

    if (r.status == 401 || code == "UNAUTHENTICATED" || code == "THIRD_PARTY_AUTH_ERROR" ||
        status == "UNAUTHENTICATED") {
      drop_token_used_by(r);
      out.kind = OutcomeKind::retryable;
      return out;
    }
    if (code == "UNREGISTERED") {
      out.kind = OutcomeKind::recipient_invalid;
    } else if (code == "INVALID_ARGUMENT") {
      const std::string m = lower(message);
      const bool bad_token = m.find("registration token") != std::string::npos ||
                             m.find("invalid token") != std::string::npos || m.find("not a valid fcm") != std::string::npos;
      out.kind = bad_token ? OutcomeKind::recipient_invalid : OutcomeKind::permanent;
    } else if (code == "SENDER_ID_MISMATCH") {
      out.kind = OutcomeKind::permanent;
    } else if (code == "QUOTA_EXCEEDED" || code == "UNAVAILABLE" || code == "INTERNAL" || retryable_status(r.status)) {
      set_retryable(out, r);
    } else {
      out.kind = OutcomeKind::permanent;
    }
    return out;
  }

  std::string address(const Notification& n) const override { return recipient_field(n, "fcm_token"); }

  [[nodiscard]] bool serves(std::string_view channel) const override { return channel == "push"; }

  [[nodiscard]] bool needs_address() const override { return true; }

  bool ready(std::int64_t now) const override { return !access_token_.empty() && now < expires_at_ms_; }

  std::optional<http::Request> token_request(std::int64_t now) override {
    if (pending_ || now < retry_at_ms_) return std::nullopt;
    if (!access_token_.empty() && now < refresh_at_ms_) return std::nullopt;
    const std::int64_t iat = now / 1000;
    json claims = {{"iss", client_email_},       {"scope", scope},
                   {"aud", token_url_},          {"iat", iat},
                   {"exp", iat + assertion_lifetime_s}};
    http::Request req;
    req.method = "POST";
    req.url = token_url_;
    req.timeout = std::chrono::milliseconds(timeout_ms_);
    req.headers.emplace_back("Content-Type: application/x-www-form-urlencoded");
    // The grant type is sent as Google documents it; a JWT is base64url and dots: nothing to escape.
    req.body = "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=" +
               crypto::jwt_sign(key_, "RS256", jwt_header_, claims.dump());
    pending_ = true;
    return req;
  }

  void on_token_response(const http::Response& r, std::int64_t now) override {
    pending_ = false;
    std::string token;
    std::int64_t lifetime_s = 0;
    if (r.status == 200) {
      const json body = json::parse(r.body, nullptr, false);
      if (body.is_object()) {
        auto t = body.find("access_token");
        auto e = body.find("expires_in");
        if (t != body.end() && t->is_string()) token = t->get<std::string>();
        if (e != body.end() && e->is_number_integer()) lifetime_s = e->get<std::int64_t>();
        if (e != body.end() && e->is_number_float()) lifetime_s = static_cast<std::int64_t>(e->get<double>());
      }
    }
    if (token.empty() || lifetime_s <= 0) {
      // No new token. A current one that has not expired stays usable; ask again after a backoff.
      backoff_ms_ = backoff_ms_ == 0 ? first_backoff_ms : std::min(backoff_ms_ * 2, max_backoff_ms);
      retry_at_ms_ = now + backoff_ms_;
      return;
    }
    const std::int64_t lifetime_ms = lifetime_s * 1000;
    access_token_ = std::move(token);
    obtained_at_ms_ = now;
    expires_at_ms_ = now + lifetime_ms;
    // Refresh 5 minutes before expiry; for tokens shorter-lived than ~25 minutes, after 80% of their
    // life instead, so a short-lived token is not refreshed the moment it arrives.
    refresh_at_ms_ = std::max(expires_at_ms_ - refresh_margin_ms, now + lifetime_ms * 8 / 10);
    backoff_ms_ = 0;
    retry_at_ms_ = 0;
  }

 private:
  FcmAdapter(const ProviderConfig& c, ServiceAccount sa)
      : key_(parse_rsa_key(c, sa.private_key)),
        client_email_(std::move(sa.client_email)),
        timeout_ms_(c.timeout_ms),
        headers_(c.headers) {
    std::string project = setting_or(c, "project_id", sa.project_id);
    if (project.empty()) {
      throw ConfigError(config_error(c, "settings.project_id", "is required (or project_id in the service account)"));
    }
    const std::string url = base_url(c, default_url);
    send_url_ = url + "/v1/projects/" + project + "/messages:send";
    if (auto it = c.settings.find("token_url"); it != c.settings.end() && !it->second.empty()) {
      token_url_ = it->second;
    } else if (!c.url.empty()) {
      token_url_ = url + "/token";  // the sandbox mints tokens at its own /token
    } else if (!sa.token_uri.empty()) {
      token_url_ = sa.token_uri;
    } else {
      token_url_ = default_token_url;
    }
    json header = {{"alg", "RS256"}, {"typ", "JWT"}};
    if (!sa.private_key_id.empty()) header["kid"] = sa.private_key_id;
    jwt_header_ = header.dump();
  }

  /// Forgets the access token a 401 was answered for, so the next token_request mints a new one.
  /// A 401 for a request sent before the current token arrived says nothing about that token.
  void drop_token_used_by(const http::Response& r) const {
    const std::int64_t sent_at = now_ms() - std::chrono::duration_cast<std::chrono::milliseconds>(r.latency).count();
    if (access_token_.empty() || obtained_at_ms_ > sent_at) return;
    access_token_.clear();
    expires_at_ms_ = 0;
    refresh_at_ms_ = 0;
    retry_at_ms_ = 0;
  }

  crypto::PrivateKey key_;  // parsed once: signing is the only use
  std::string client_email_;
  std::int64_t timeout_ms_;
  std::map<std::string, std::string> headers_;
  std::string send_url_;
  std::string token_url_;
  std::string jwt_header_;

  // Access-token state. Touched only on the engine loop thread (build, classify, ready,
  // token_request, on_token_response all run there), so no lock; mutable because classify(),
  // a const call, drops the token when FCM answers 401.
  mutable std::string access_token_;
  mutable std::int64_t expires_at_ms_ = 0;
  mutable std::int64_t refresh_at_ms_ = 0;
  mutable std::int64_t retry_at_ms_ = 0;
  std::int64_t obtained_at_ms_ = 0;
  std::int64_t backoff_ms_ = 0;
  bool pending_ = false;
};

}  // namespace

std::unique_ptr<Adapter> make_fcm(const ProviderConfig& c) { return std::make_unique<FcmAdapter>(c); }

}  // namespace herald::adapters
