#include "herald/provider.hpp"

#include <charconv>
#include <ctime>

#include <nlohmann/json.hpp>

#include "herald/errors.hpp"
#include "herald/json_text.hpp"

namespace herald {

namespace {

using json = nlohmann::json;

/// The JSON document both built-in adapters send: the recipient, the rendered text and the data.
std::string message_body(const SendContext& ctx) {
  const Notification& n = ctx.notification;
  std::string body;
  body.reserve(96 + n.recipient_json.size() + n.data_json.size() + ctx.text.size());
  body += "{\"id\":";
  body += std::to_string(n.id);
  body += ",\"type\":";
  detail::append_json_string(body, n.type);
  body += ",\"tenant\":";
  detail::append_json_string(body, n.tenant);
  body += ",\"channel\":";
  detail::append_json_string(body, ctx.plan.channel);
  body += ",\"to\":";
  body += n.recipient_json;  // validated as a JSON object at intake
  body += ",\"text\":";
  detail::append_json_string(body, ctx.text);
  body += ",\"data\":";
  body += n.data_json;
  body += "}";
  return body;
}

http::Request json_post(const ProviderConfig& c, std::string url, const SendContext& ctx) {
  http::Request req;
  req.method = "POST";
  req.url = std::move(url);
  req.timeout = std::chrono::milliseconds(c.timeout_ms);
  req.body = message_body(ctx);
  req.headers.reserve(5 + c.headers.size());
  req.headers.emplace_back("Content-Type: application/json");
  req.headers.emplace_back("X-Herald-Id: " + std::to_string(ctx.notification.id));
  req.headers.emplace_back("X-Herald-Attempt: " + std::to_string(ctx.attempt));
  // The same key on every attempt lets the receiver drop a resend it already has.
  req.headers.emplace_back("Idempotency-Key: herald-" + std::to_string(ctx.notification.id));
  if (ctx.in_doubt) req.headers.emplace_back("X-Herald-In-Doubt: 1");
  for (const auto& [k, v] : c.headers) req.headers.emplace_back(k + ": " + v);
  return req;
}

class SandboxAdapter final : public Adapter {
 public:
  explicit SandboxAdapter(ProviderConfig c) : config_(std::move(c)) {
    url_ = config_.url;
    while (!url_.empty() && url_.back() == '/') url_.pop_back();
    url_ += "/v1/" + config_.name + "/messages";
  }
  [[nodiscard]] http::Request build(const SendContext& ctx) const override { return json_post(config_, url_, ctx); }
  [[nodiscard]] Outcome classify(const http::Response& r) const override { return classify_http(r); }

 private:
  ProviderConfig config_;
  std::string url_;
};

class WebhookAdapter final : public Adapter {
 public:
  explicit WebhookAdapter(ProviderConfig c) : config_(std::move(c)) {}
  [[nodiscard]] http::Request build(const SendContext& ctx) const override {
    return json_post(config_, config_.url, ctx);
  }
  [[nodiscard]] Outcome classify(const http::Response& r) const override { return classify_http(r); }

 private:
  ProviderConfig config_;
};

bool is_recipient_error(std::string_view code) {
  return code == "recipient_invalid" || code == "invalid_recipient" || code == "invalid_address" ||
         code == "unregistered";
}

std::string short_body(const std::string& body) {
  constexpr std::size_t limit = 200;
  std::string s = body.substr(0, limit);
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return s;
}

}  // namespace

std::string_view to_string(OutcomeKind k) noexcept {
  switch (k) {
    case OutcomeKind::accepted: return "accepted";
    case OutcomeKind::retryable: return "retryable";
    case OutcomeKind::permanent: return "permanent";
    case OutcomeKind::recipient_invalid: return "recipient_invalid";
  }
  return "unknown";
}

void validate(const ProviderConfig& c) {
  const std::string where = "providers." + (c.name.empty() ? std::string("?") : c.name) + ".";
  if (c.name.empty()) throw ConfigError("providers[].name: is required");
  for (char ch : c.name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '-' || ch == '_';
    if (!ok) throw ConfigError(where + "name: may contain only letters, digits, - and _");
  }
  if (c.kind != "sandbox" && c.kind != "webhook") {
    throw ConfigError(where + "kind: unknown kind '" + c.kind + "' (known: sandbox, webhook)");
  }
  if (c.url.rfind("http://", 0) != 0 && c.url.rfind("https://", 0) != 0) {
    throw ConfigError(where + "url: must start with http:// or https://");
  }
  if (c.concurrency < 1 || c.concurrency > 10'000) throw ConfigError(where + "concurrency: must be 1..10000");
  if (c.max_attempts < 0 || c.max_attempts > 100) throw ConfigError(where + "max_attempts: must be 0..100");
  if (c.timeout_ms < 1 || c.timeout_ms > 600'000) throw ConfigError(where + "timeout_ms: must be 1..600000");
  for (const auto& [k, v] : c.headers) {
    if (k.empty() || k.find_first_of(":\r\n ") != std::string::npos) {
      throw ConfigError(where + "headers: bad header name '" + k + "'");
    }
    if (v.find_first_of("\r\n") != std::string::npos) {
      throw ConfigError(where + "headers." + k + ": value contains a line break");
    }
  }
}

std::unique_ptr<Adapter> make_adapter(const ProviderConfig& c) {
  validate(c);
  if (c.kind == "sandbox") return std::make_unique<SandboxAdapter>(c);
  return std::make_unique<WebhookAdapter>(c);
}

std::int64_t parse_retry_after_ms(std::string_view value, std::int64_t now) {
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\r')) value.remove_suffix(1);
  if (value.empty()) return -1;
  std::int64_t seconds = 0;
  auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec == std::errc() && ptr == value.data() + value.size()) return seconds < 0 ? -1 : seconds * 1000;
  // HTTP-date, IMF-fixdate form: "Sun, 06 Nov 1994 08:49:37 GMT"
  std::tm tm{};
  const std::string s(value);
  if (strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm) == nullptr) return -1;
  const std::int64_t at = static_cast<std::int64_t>(timegm(&tm)) * 1000;
  return at > now ? at - now : 0;
}

Outcome classify_http(const http::Response& r) {
  Outcome out;
  if (r.status == 0) {
    out.kind = OutcomeKind::retryable;
    out.error = r.timed_out ? "timeout" : "transport: " + r.transport_error;
    return out;
  }
  json body = json::parse(r.body, nullptr, false);
  if (r.status >= 200 && r.status < 300) {
    out.kind = OutcomeKind::accepted;
    if (body.is_object()) {
      for (const char* key : {"id", "sid", "name", "message_id"}) {
        auto it = body.find(key);
        if (it != body.end() && it->is_string()) {
          out.provider_message_id = it->get<std::string>();
          break;
        }
      }
    }
    if (out.provider_message_id.empty()) out.provider_message_id = r.header("x-message-id");
    return out;
  }
  std::string code;
  if (body.is_object()) {
    auto err = body.find("error");
    if (err != body.end() && err->is_object()) {
      auto c = err->find("code");
      if (c != err->end() && c->is_string()) code = c->get<std::string>();
    }
  }
  out.error = "HTTP " + std::to_string(r.status) + (code.empty() ? ": " + short_body(r.body) : ": " + code);
  if (is_recipient_error(code)) {
    out.kind = OutcomeKind::recipient_invalid;
  } else if (r.status == 408 || r.status == 425 || r.status == 429 || r.status >= 500) {
    out.kind = OutcomeKind::retryable;
    out.retry_after_ms = parse_retry_after_ms(r.header("retry-after"), std::time(nullptr) * 1000LL);
  } else {
    out.kind = OutcomeKind::permanent;
  }
  return out;
}

std::string render_template(std::string_view tmpl, const std::string& data_json) {
  if (tmpl.find_first_of("{}") == std::string_view::npos) return std::string(tmpl);
  const json data = json::parse(data_json, nullptr, false);
  std::string out;
  out.reserve(tmpl.size() + 32);
  for (std::size_t i = 0; i < tmpl.size(); ++i) {
    const char c = tmpl[i];
    if ((c == '{' || c == '}') && i + 1 < tmpl.size() && tmpl[i + 1] == c) {
      out += c;
      ++i;
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    const auto close = tmpl.find('}', i);
    if (close == std::string_view::npos) {
      out.append(tmpl.substr(i));
      break;
    }
    std::string_view expr = tmpl.substr(i + 1, close - i - 1);
    std::string_view fallback;
    bool has_fallback = false;
    if (auto bar = expr.find('|'); bar != std::string_view::npos) {
      fallback = expr.substr(bar + 1);
      expr = expr.substr(0, bar);
      has_fallback = true;
    }
    const json* node = &data;
    while (node != nullptr && !expr.empty()) {
      const auto dot = expr.find('.');
      const std::string key(expr.substr(0, dot));
      if (!node->is_object()) {
        node = nullptr;
        break;
      }
      auto it = node->find(key);
      node = it == node->end() ? nullptr : &*it;
      expr = dot == std::string_view::npos ? std::string_view{} : expr.substr(dot + 1);
    }
    if (node != nullptr && !node->is_null()) {
      out += node->is_string() ? node->get<std::string>() : node->dump();
    } else if (has_fallback) {
      out.append(fallback);
    }
    i = close;
  }
  return out;
}

}  // namespace herald
