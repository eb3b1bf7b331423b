// Slack incoming webhooks: one JSON POST to a URL that is itself the credential.
#include <nlohmann/json.hpp>

#include "adapters.hpp"
#include "herald/errors.hpp"
#include "herald/json_text.hpp"

namespace herald::adapters {

namespace {

using json = nlohmann::json;

/// secrets.webhook_url, else url. Errors never quote either: the URL carries the token.
std::string webhook_url(const ProviderConfig& c) {
  auto it = c.secrets.find("webhook_url");
  if (it != c.secrets.end() && !it->second.empty()) {
    if (it->second.rfind("http://", 0) != 0 && it->second.rfind("https://", 0) != 0) {
      throw ConfigError(config_error(c, "secrets.webhook_url", "must start with http:// or https://"));
    }
    return it->second;
  }
  if (!c.url.empty()) return c.url;
  throw ConfigError(config_error(c, "secrets.webhook_url", "is required (or url)"));
}

/// `text` with every occurrence of `secret` replaced, so a transport error or an echoing
/// server cannot leak the webhook URL into records.
std::string scrub(std::string text, const std::string& secret) {
  if (secret.empty()) return text;
  for (auto pos = text.find(secret); pos != std::string::npos; pos = text.find(secret, pos)) {
    text.replace(pos, secret.size(), "<webhook>");
  }
  return text;
}

class SlackAdapter final : public Adapter {
 public:
  explicit SlackAdapter(const ProviderConfig& c)
      : url_(webhook_url(c)), timeout_ms_(c.timeout_ms), headers_(c.headers) {
    // The path (/services/T…/B…/secret) is the secret part; scrub it on its own too.
    const auto scheme = url_.find("://");
    const auto slash = scheme == std::string::npos ? std::string::npos : url_.find('/', scheme + 3);
    if (slash != std::string::npos && url_.size() - slash > 1) path_ = url_.substr(slash);
  }

  http::Request build(const SendContext& ctx) const override {
    http::Request req;
    req.method = "POST";
    req.url = url_;
    req.timeout = std::chrono::milliseconds(timeout_ms_);
    std::string body;
    body.reserve(16 + ctx.text.size());
    body += R"({"text":)";
    detail::append_json_string(body, ctx.text);
    const json data = json::parse(ctx.notification.data_json, nullptr, false);
    if (data.is_object()) {
      auto blocks = data.find("blocks");
      if (blocks != data.end() && blocks->is_array()) {
        body += R"(,"blocks":)";
        body += blocks->dump();
      }
    }
    body += '}';
    req.body = std::move(body);
    req.headers.reserve(1 + headers_.size());
    req.headers.emplace_back("Content-Type: application/json");
    for (const auto& [k, v] : headers_) req.headers.emplace_back(k + ": " + v);
    return req;
  }

  [[nodiscard]] bool serves(std::string_view channel) const override { return channel == "chat"; }

  Outcome classify(const http::Response& r) const override {
    Outcome out;
    if (r.status == 0) {
      out = classify_http(r);
      out.error = clean(out.error);
      return out;
    }
    if (r.status >= 200 && r.status < 300) {
      out.kind = OutcomeKind::accepted;  // Slack answers "ok" and gives no message id
      return out;
    }
    out.error = "HTTP " + std::to_string(r.status) + ": " + short_body(clean(r.body));
    out.provider_code = error_word(r.body);
    if (retryable_status(r.status)) {
      set_retryable(out, r);
    } else {
      out.kind = OutcomeKind::permanent;  // invalid_payload, no_text, invalid_token, no_service, channel_is_archived, ...
    }
    return out;
  }

 private:
  /// Slack's webhooks answer a refusal with one word in plain text (invalid_payload, no_text,
  /// channel_is_archived); anything else is not a code.
  [[nodiscard]] static std::string error_word(const std::string& body) {
    std::string word = body;
    while (!word.empty() && (word.back() == '\n' || word.back() == '\r' || word.back() == ' ')) word.pop_back();
    if (word.empty() || word.size() > 64) return {};
    for (char c : word) {
      if (!((c >= 'a' && c <= 'z') || c == '_')) return {};
    }
    return word;
  }

  [[nodiscard]] std::string clean(std::string text) const { return scrub(scrub(std::move(text), url_), path_); }

  std::string url_;   // the credential: never in errors
  std::string path_;  // its secret part
  std::int64_t timeout_ms_;
  std::map<std::string, std::string> headers_;
};

}  // namespace

std::unique_ptr<Adapter> make_slack(const ProviderConfig& c) { return std::make_unique<SlackAdapter>(c); }

}  // namespace herald::adapters
