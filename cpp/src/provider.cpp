#include "herald/provider.hpp"

#include <array>
#include <charconv>
#include <ctime>
#include <optional>

#include <nlohmann/json.hpp>

#include "herald/errors.hpp"
#include "herald/json_text.hpp"
#include "adapters/adapters.hpp"
#include "simple_json.hpp"

namespace herald {

namespace {

using json = nlohmann::json;

bool is_recipient_error(std::string_view code) {
  return code == "recipient_invalid" || code == "invalid_recipient" || code == "invalid_address" ||
         code == "unregistered";
}

using Factory = std::unique_ptr<Adapter> (*)(const ProviderConfig&);
struct KindEntry {
  std::string_view kind;
  Factory make;
};
constexpr KindEntry kinds[] = {
    {"sandbox", adapters::make_sandbox}, {"webhook", adapters::make_webhook}, {"twilio", adapters::make_twilio},
    {"sendgrid", adapters::make_sendgrid}, {"smtp", adapters::make_smtp},     {"fcm", adapters::make_fcm},
    {"apns", adapters::make_apns},       {"slack", adapters::make_slack},
};

std::string known_kinds() {
  std::string out;
  for (const auto& k : kinds) out += (out.empty() ? "" : ", ") + std::string(k.kind);
  return out;
}

/// The provider's id for an accepted message: the first of "id", "sid", "name", "message_id" that
/// is a string at the top of a JSON object body; "" when none is, or the body is not valid JSON.
/// The same answer as parsing the body into a json value and looking there (a repeated key: its
/// last value), read without building one: this runs once per accepted message on the loop.
std::string top_level_message_id(const std::string& body) {
  static constexpr std::array<std::string_view, 4> keys{"id", "sid", "name", "message_id"};
  struct Reader final : json::json_sax_t {
    int depth = 0;
    bool object = false;     ///< the document is an object
    int member = -1;         ///< which of `keys` the current top-level member is (-1: none)
    std::array<std::optional<std::string>, keys.size()> found;

    bool value() {  // a member's value that is not a string: that key has no string (last one wins)
      if (depth == 1 && member >= 0) found[static_cast<std::size_t>(member)].reset();
      return true;
    }
    bool null() override { return value(); }
    bool boolean(bool) override { return value(); }
    bool number_integer(number_integer_t) override { return value(); }
    bool number_unsigned(number_unsigned_t) override { return value(); }
    bool number_float(number_float_t, const string_t&) override { return value(); }
    bool binary(binary_t&) override { return value(); }
    bool string(string_t& v) override {
      if (depth == 1 && member >= 0) found[static_cast<std::size_t>(member)] = std::move(v);
      return true;
    }
    bool start_object(std::size_t) override {
      if (depth == 0) object = true;
      value();
      ++depth;
      return true;
    }
    bool start_array(std::size_t) override {
      value();
      ++depth;
      return true;
    }
    bool end_object() override {
      --depth;
      return true;
    }
    bool end_array() override {
      --depth;
      return true;
    }
    bool key(string_t& k) override {
      if (depth != 1) return true;
      member = -1;
      for (std::size_t i = 0; i < keys.size(); ++i) {
        if (k == keys[i]) member = static_cast<int>(i);
      }
      return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }
  } reader;
  // Most answers are simple JSON (simple_json.hpp): read without nlohmann's lexer.
  std::array<std::string_view, keys.size()> simple;
  std::array<bool, keys.size()> is_text{};
  const bool read = detail::SimpleJson::object_members(body, [&](std::string_view k, std::string_view v, bool text) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (k == keys[i]) {
        simple[i] = v;
        is_text[i] = text;  // a repeated key: its last value
      }
    }
  });
  if (read) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (is_text[i]) return std::string(simple[i]);
    }
    return {};
  }
  if (!json::sax_parse(body, &reader) || !reader.object) return {};
  for (auto& v : reader.found) {
    if (v) return std::move(*v);
  }
  return {};
}

}  // namespace

namespace adapters {

std::string config_error(const ProviderConfig& c, std::string_view field, std::string_view reason) {
  return "providers." + (c.name.empty() ? std::string("?") : c.name) + "." + std::string(field) + ": " +
         std::string(reason);
}

const std::string& require_setting(const ProviderConfig& c, const std::string& key) {
  auto it = c.settings.find(key);
  if (it == c.settings.end() || it->second.empty()) throw ConfigError(config_error(c, "settings." + key, "is required"));
  return it->second;
}

const std::string& require_secret(const ProviderConfig& c, const std::string& key) {
  auto it = c.secrets.find(key);
  if (it == c.secrets.end() || it->second.empty()) throw ConfigError(config_error(c, "secrets." + key, "is required"));
  return it->second;
}

std::string setting_or(const ProviderConfig& c, const std::string& key, std::string fallback) {
  auto it = c.settings.find(key);
  return it == c.settings.end() || it->second.empty() ? std::move(fallback) : it->second;
}

std::string base_url(const ProviderConfig& c, std::string_view real_default) {
  std::string url = c.url.empty() ? std::string(real_default) : c.url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

std::string recipient_field(const Notification& n, std::string_view field) {
  const json r = json::parse(n.recipient_json, nullptr, false);
  if (!r.is_object()) return {};
  auto it = r.find(field);
  return it != r.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

std::string short_body(const std::string& body) {
  constexpr std::size_t limit = 200;
  std::string s = body.substr(0, limit);
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return s;
}

}  // namespace adapters

std::string InboundRequest::header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers) {
    if (k == lower_name) return v;
  }
  return {};
}

std::string Adapter::address(const Notification& /*n*/) const { return {}; }

http::Request Adapter::build_batch(const std::vector<SendContext>& batch) const {
  if (batch.size() != 1) throw Error("this adapter does not batch");
  return build(batch.front());
}

std::vector<Outcome> Adapter::classify_batch(const http::Response& r, std::size_t count) const {
  return std::vector<Outcome>(count, classify(r));
}

std::string_view to_string(ReceiptStatus s) noexcept {
  switch (s) {
    case ReceiptStatus::progress: return "progress";
    case ReceiptStatus::delivered: return "delivered";
    case ReceiptStatus::failed: return "failed";
    case ReceiptStatus::bounced_soft: return "bounced_soft";
    case ReceiptStatus::bounced_hard: return "bounced_hard";
    case ReceiptStatus::opened: return "opened";
    case ReceiptStatus::opted_out: return "opted_out";
  }
  return "unknown";
}

std::string_view to_string(OutcomeKind k) noexcept {
  switch (k) {
    case OutcomeKind::accepted: return "accepted";
    case OutcomeKind::retryable: return "retryable";
    case OutcomeKind::permanent: return "permanent";
    case OutcomeKind::recipient_invalid: return "recipient_invalid";
    case OutcomeKind::recipient_opted_out: return "recipient_opted_out";
  }
  return "unknown";
}

ErrorClass error_class_of(OutcomeKind k, const http::Response& resp) noexcept {
  switch (k) {
    case OutcomeKind::accepted: return ErrorClass::none;
    case OutcomeKind::recipient_invalid: return ErrorClass::recipient_invalid;
    case OutcomeKind::recipient_opted_out: return ErrorClass::opted_out;
    case OutcomeKind::retryable:
    case OutcomeKind::permanent: break;
  }
  if (resp.status == 0) return resp.timed_out ? ErrorClass::timeout : ErrorClass::transport;
  if (resp.status == 429) return ErrorClass::rate_limited;
  return ErrorClass::provider_error;
}

void validate(const ProviderConfig& c) {
  const std::string where = "providers." + (c.name.empty() ? std::string("?") : c.name) + ".";
  if (c.name.empty()) throw ConfigError("providers[].name: is required");
  for (char ch : c.name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    ch == '-' || ch == '_';
    if (!ok) throw ConfigError(where + "name: may contain only letters, digits, - and _");
  }
  bool known = false;
  for (const auto& k : kinds) known = known || k.kind == c.kind;
  if (!known) throw ConfigError(where + "kind: unknown kind '" + c.kind + "' (known: " + known_kinds() + ")");
  if (!c.url.empty() && c.url.rfind("http://", 0) != 0 && c.url.rfind("https://", 0) != 0 &&
      !(c.kind == "smtp" && (c.url.rfind("smtp://", 0) == 0 || c.url.rfind("smtps://", 0) == 0))) {
    throw ConfigError(where + "url: must start with http:// or https://" +
                      (c.kind == "smtp" ? std::string(" (smtp: smtp:// or smtps://)") : std::string()));
  }
  if (c.concurrency < 1 || c.concurrency > 10'000) throw ConfigError(where + "concurrency: must be 1..10000");
  if (c.max_attempts < 0 || c.max_attempts > 100) throw ConfigError(where + "max_attempts: must be 0..100");
  if (c.timeout_ms < 1 || c.timeout_ms > 600'000) throw ConfigError(where + "timeout_ms: must be 1..600000");
  if (!(c.rate_per_s >= 0) || c.rate_per_s > 1e7) throw ConfigError(where + "rate_per_s: must be 0..1e7 (0 = unlimited)");
  if (!(c.cost_per_message >= 0)) throw ConfigError(where + "cost_per_message: must be 0 or more");
  const CircuitConfig& cb = c.circuit;
  if (!(cb.failure_rate >= 0 && cb.failure_rate <= 1)) throw ConfigError(where + "circuit_failure_rate: must be 0..1 (0 = off)");
  if (cb.min_attempts < 1 || cb.min_attempts > 1'000'000) throw ConfigError(where + "circuit_min_attempts: must be 1..1000000");
  if (cb.window_ms < 1000 || cb.window_ms > 3'600'000) throw ConfigError(where + "circuit_window_ms: must be 1000..3600000");
  if (cb.consecutive_failures < 0 || cb.consecutive_failures > 1'000'000) {
    throw ConfigError(where + "circuit_consecutive_failures: must be 0..1000000 (0 = off)");
  }
  if (cb.cooldown_ms < 1 || cb.cooldown_ms > 3'600'000) throw ConfigError(where + "circuit_cooldown_ms: must be 1..3600000");
  if (cb.probes < 1 || cb.probes > 1000) throw ConfigError(where + "circuit_probes: must be 1..1000");
  for (const auto& [k, v] : c.headers) {
    if (k.empty() || k.find_first_of(":\r\n ") != std::string::npos) {
      throw ConfigError(where + "headers: bad header name '" + k + "'");
    }
    if (v.find_first_of("\r\n") != std::string::npos) {
      throw ConfigError(where + "headers." + k + ": value contains a line break");
    }
  }
  for (const auto& [k, v] : c.secrets) {
    if (v.empty()) throw ConfigError(where + "secrets." + k + ": is empty");
  }
}

std::unique_ptr<Adapter> make_adapter(const ProviderConfig& c) {
  validate(c);
  for (const auto& k : kinds) {
    if (k.kind == c.kind) return k.make(c);
  }
  throw ConfigError("providers." + c.name + ".kind: unknown");  // validate() already refused it
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
    out.error = adapters::transport_error_text(r);
    return out;
  }
  if (r.status >= 200 && r.status < 300) {
    out.kind = OutcomeKind::accepted;
    out.provider_message_id = top_level_message_id(r.body);
    if (out.provider_message_id.empty()) out.provider_message_id = r.header("x-message-id");
    return out;
  }
  json body = json::parse(r.body, nullptr, false);
  std::string code;
  if (body.is_object()) {
    auto err = body.find("error");
    if (err != body.end() && err->is_object()) {
      auto c = err->find("code");
      if (c != err->end() && c->is_string()) code = c->get<std::string>();
    }
  }
  out.error = "HTTP " + std::to_string(r.status) + (code.empty() ? ": " + adapters::short_body(r.body) : ": " + code);
  out.provider_code = code;
  if (is_recipient_error(code)) {
    out.kind = OutcomeKind::recipient_invalid;
  } else if (adapters::retryable_status(r.status)) {
    adapters::set_retryable(out, r);
  } else {
    out.kind = OutcomeKind::permanent;
  }
  return out;
}

namespace {

/// The walk both renderers share: text goes to `out` ("{{" and "}}" are braces, an unclosed "{"
/// is text); each {name} or {name|fallback} is handed to `variable(name, fallback, has_fallback)`,
/// which appends its value, or returns false to stop the walk (then walk_template returns false).
template <typename Variable>
bool walk_template(std::string_view tmpl, std::string& out, Variable&& variable) {
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
    std::string_view name = tmpl.substr(i + 1, close - i - 1);
    std::string_view fallback;
    bool has_fallback = false;
    if (auto bar = name.find('|'); bar != std::string_view::npos) {
      fallback = name.substr(bar + 1);
      name = name.substr(0, bar);
      has_fallback = true;
    }
    if (!variable(name, fallback, has_fallback)) return false;
    i = close;
  }
  return true;
}

}  // namespace

namespace adapters {

std::string render_with(std::string_view tmpl, const nlohmann::json& data) {
  std::string out;
  walk_template(tmpl, out, [&](std::string_view name, std::string_view fallback, bool has_fallback) {
    std::string_view expr = name;
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
    } else {
      throw TemplateError("template: missing variable '" + std::string(name) + "'");
    }
    return true;
  });
  return out;
}

}  // namespace adapters

namespace {

/// render_with for data that is simple JSON (simple_json.hpp) and variables that name its
/// top-level strings, read without building a json value; nullopt for anything else (a dotted
/// name, a value that is not a string, a missing variable without a default, more than 16
/// members), which render_with then renders or refuses exactly as it always did.
std::optional<std::string> render_simple(std::string_view tmpl, std::string_view data_json) {
  struct Member {
    std::string_view key, value;
    bool is_text = false;
  };
  std::array<Member, 16> members;
  std::size_t count = 0;
  bool fits = true;
  const bool simple = detail::SimpleJson::object_members(data_json, [&](std::string_view k, std::string_view v, bool text) {
    if (count == members.size()) {
      fits = false;
      return;
    }
    members[count++] = Member{k, v, text};
  });
  if (!simple || !fits) return std::nullopt;
  std::string out;
  const bool whole = walk_template(tmpl, out, [&](std::string_view name, std::string_view fallback, bool has_fallback) {
    if (name.empty() || name.find('.') != std::string_view::npos) return false;
    const Member* found = nullptr;
    for (std::size_t k = count; k-- > 0;) {  // a repeated key: its last value, as in a json object
      if (members[k].key == name) {
        found = &members[k];
        break;
      }
    }
    if (found != nullptr && found->is_text) {
      out.append(found->value);
    } else if (found == nullptr && has_fallback) {
      out.append(fallback);
    } else {
      return false;  // a value written as JSON, null, or missing: render_with's to say
    }
    return true;
  });
  if (!whole) return std::nullopt;
  return out;
}

}  // namespace

std::string render_template(std::string_view tmpl, const std::string& data_json) {
  if (tmpl.find_first_of("{}") == std::string_view::npos) return std::string(tmpl);
  if (auto simple = render_simple(tmpl, data_json)) return std::move(*simple);
  return adapters::render_with(tmpl, json::parse(data_json, nullptr, false));
}

}  // namespace herald
