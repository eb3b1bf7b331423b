#include "adapters.hpp"

#include <algorithm>
#include <charconv>
#include <ctime>
#include <stdexcept>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "herald/crypto.hpp"

namespace herald::adapters {

namespace {

using json = nlohmann::json;

/// How far (either way) a signed event's timestamp may be from now.
constexpr std::int64_t event_tolerance_s = 300;

/// The placeholder tags of a template, as render_template reads them ("{name}", "{a.b|x}"), each once.
std::vector<std::string> template_tags(std::string_view tmpl) {
  std::vector<std::string> tags;
  std::unordered_set<std::string> seen;
  for (std::size_t i = tmpl.find('{'); i != std::string_view::npos; i = tmpl.find('{', i + 1)) {
    const auto close = tmpl.find('}', i);
    if (close == std::string_view::npos) break;
    std::string tag(tmpl.substr(i, close - i + 1));
    if (seen.insert(tag).second) tags.push_back(std::move(tag));
    i = close;
  }
  return tags;
}

/// An event's herald_id (top level, where SendGrid puts custom_args; string or number).
Id herald_id_of(const json& e) {
  const json* v = nullptr;
  if (auto it = e.find("herald_id"); it != e.end()) v = &*it;
  if (v == nullptr) return 0;
  if (v->is_number_integer()) return v->get<Id>();
  if (!v->is_string()) return 0;
  const std::string s = v->get<std::string>();
  Id id = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
  return ec == std::errc() && ptr == s.data() + s.size() && id > 0 ? id : 0;
}

std::string string_field(const json& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number()) return it->dump();
  return {};
}

/// One Event Webhook event as a receipt.
Receipt receipt_of(const json& e) {
  Receipt r;
  r.notification_id = herald_id_of(e);
  std::string sg_id = string_field(e, "sg_message_id");
  r.provider_message_id = sg_id.substr(0, sg_id.find('.'));
  r.provider_status = string_field(e, "event");
  const std::string& ev = r.provider_status;
  if (ev == "delivered") {
    r.status = ReceiptStatus::delivered;
  } else if (ev == "deferred") {
    r.status = ReceiptStatus::bounced_soft;
  } else if (ev == "open" || ev == "click") {
    r.status = ReceiptStatus::opened;
  } else if (ev == "bounce") {
    r.status = string_field(e, "type") == "blocked" ? ReceiptStatus::bounced_soft : ReceiptStatus::bounced_hard;
  } else if (ev == "dropped") {
    r.status = ReceiptStatus::failed;
  } else if (ev == "unsubscribe" || ev == "group_unsubscribe" || ev == "spamreport") {
    r.status = ReceiptStatus::opted_out;
  } else {
    r.status = ReceiptStatus::progress;  // processed, group_resubscribe, and events added later
  }
  r.error_code = string_field(e, "status");  // the SMTP enhanced status of bounces and deferrals
  return r;
}

/// SendGrid v3 mail/send: one JSON request per email, or up to 1,000 personalizations sharing one
/// content with per-recipient substitutions; receipts from the signed Event Webhook.
class SendgridAdapter final : public Adapter {
 public:
  explicit SendgridAdapter(const ProviderConfig& c)
      : config_(c),
        url_(base_url(c, "https://api.sendgrid.com") + "/v3/mail/send"),
        from_(require_setting(c, "from")),
        from_name_(setting_or(c, "from_name", "")),
        subject_(setting_or(c, "subject", "")),
        api_key_(require_secret(c, "api_key")) {
    if (from_.find('@') == std::string::npos) throw ConfigError(config_error(c, "settings.from", "must be an email address"));
    if (auto it = c.secrets.find("verification_key"); it != c.secrets.end()) verification_key_ = it->second;
    if (!verification_key_.empty() && verification_key_.find("BEGIN PUBLIC KEY") == std::string::npos) {
      try {
        (void)crypto::base64_decode(verification_key_);
      } catch (const std::exception&) {
        throw ConfigError(config_error(c, "secrets.verification_key", "must be a base64 DER or PEM public key"));
      }
    }
  }

  [[nodiscard]] http::Request build(const SendContext& ctx) const override {
    json p = {{"to", json::array({{{"email", recipient_field(ctx.notification, "email")}}})},
              {"custom_args", {{"herald_id", std::to_string(ctx.notification.id)}}}};
    const RenderedContent content = render_content(ctx);
    json doc = envelope(content.subject.empty() ? subject_of(ctx.notification) : content.subject);
    doc["personalizations"] = json::array({std::move(p)});
    doc["content"] = contents(ctx.text, content.html);
    return post(doc.dump(-1, ' ', false, json::error_handler_t::replace));
  }

  [[nodiscard]] Outcome classify(const http::Response& r) const override {
    if (r.status == 0) return classify_http(r);
    Outcome out;
    if (r.status >= 200 && r.status < 300) {
      out.kind = OutcomeKind::accepted;
      out.provider_message_id = r.header("x-message-id");
      return out;
    }
    const std::string prefix = "HTTP " + std::to_string(r.status) + ": ";
    if (r.status == 401 || r.status == 403) {
      out.kind = OutcomeKind::permanent;
      out.error = prefix + "sendgrid: api key rejected";
      return out;
    }
    if (retryable_status(r.status)) {
      set_retryable(out, r);
      out.error = prefix + short_body(r.body);
      if (out.retry_after_ms < 0) {  // SendGrid's rate limit answer names the reset time instead
        const std::int64_t now = std::time(nullptr) * 1000LL;
        const std::string reset = r.header("x-ratelimit-reset");
        std::int64_t at = 0;
        auto [ptr, ec] = std::from_chars(reset.data(), reset.data() + reset.size(), at);
        if (ec == std::errc() && ptr == reset.data() + reset.size() && at > 0) out.retry_after_ms = std::max<std::int64_t>(0, at * 1000 - now);
      }
      return out;
    }
    out.kind = OutcomeKind::permanent;  // 400 (the request), 413 (too large), other 4xx
    std::string message;
    const json body = json::parse(r.body, nullptr, false);
    if (body.is_object()) {
      auto errors = body.find("errors");
      if (errors != body.end() && errors->is_array() && !errors->empty() && errors->front().is_object()) {
        message = string_field(errors->front(), "message");
      }
    }
    out.error = prefix + "sendgrid " + short_body(message.empty() ? r.body : message);
    // SendGrid has no error codes: its first error's message is its own word for the refusal.
    out.provider_code = short_body(message).substr(0, 120);
    return out;
  }

  [[nodiscard]] std::string address(const Notification& n) const override { return recipient_field(n, "email"); }

  [[nodiscard]] bool serves(std::string_view channel) const override { return channel == "email"; }

  [[nodiscard]] bool needs_address() const override { return true; }

  [[nodiscard]] std::size_t max_batch() const override { return 1000; }

  /// One request for the batch: the plan's text and html templates as the content with their
  /// placeholder tags kept, and per personalization a `substitutions` map from each tag to that
  /// notification's value (SendGrid applies it to both parts); the subject is rendered per
  /// personalization. Throws herald::Error (the engine then sends one by one) when the batch cannot
  /// be carried so: templates differ, a template has "{{"/"}}" escapes (a literal brace SendGrid
  /// would not unescape), an address is missing or repeats (SendGrid refuses a repeated address), or
  /// a variable is missing (TemplateError: alone, that notification ends with the reason).
  [[nodiscard]] http::Request build_batch(const std::vector<SendContext>& batch) const override {
    if (batch.empty()) throw Error("sendgrid: empty batch");
    if (batch.size() > max_batch()) throw Error("sendgrid: more than 1000 personalizations");
    const std::string& tmpl = batch.front().plan.template_text;
    const std::string& html = batch.front().plan.content.html;
    const std::string& subject_tmpl = batch.front().plan.content.subject;
    for (const std::string* t : {&tmpl, &html}) {
      if (t->find("{{") != std::string::npos || t->find("}}") != std::string::npos) {
        throw Error("sendgrid: template has escaped braces; sent one by one");
      }
    }
    std::vector<std::string> tags = template_tags(tmpl);
    for (std::string& tag : template_tags(html)) {
      if (std::find(tags.begin(), tags.end(), tag) == tags.end()) tags.push_back(std::move(tag));
    }
    std::unordered_set<std::string> addresses;
    addresses.reserve(batch.size());
    auto subject_for = [&](const SendContext& ctx) {
      return subject_tmpl.empty() ? subject_of(ctx.notification)
                                  : render_template(subject_tmpl, ctx.notification.data_json);
    };
    const std::string first_subject = subject_for(batch.front());
    bool same_subject = true;
    json personalizations = json::array();
    for (const SendContext& ctx : batch) {
      if (ctx.plan.template_text != tmpl || ctx.plan.content.html != html || ctx.plan.content.subject != subject_tmpl) {
        throw Error("sendgrid: a batch must share one template");
      }
      std::string email = recipient_field(ctx.notification, "email");
      if (email.empty()) throw Error("sendgrid: a recipient without an email address");
      std::string key = email;
      for (char& ch : key) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
      if (!addresses.insert(std::move(key)).second) throw Error("sendgrid: an address repeats within the batch");
      json subs = json::object();
      for (const std::string& tag : tags) subs[tag] = render_template(tag, ctx.notification.data_json);
      json p = {{"to", json::array({{{"email", std::move(email)}}})},
                {"custom_args", {{"herald_id", std::to_string(ctx.notification.id)}}}};
      if (!tags.empty()) p["substitutions"] = std::move(subs);
      std::string subject = subject_for(ctx);
      if (subject != first_subject) same_subject = false;
      p["subject"] = std::move(subject);
      personalizations.push_back(std::move(p));
    }
    if (same_subject) {
      for (json& p : personalizations) p.erase("subject");
    }
    json doc = envelope(first_subject);
    doc["personalizations"] = std::move(personalizations);
    doc["content"] = contents(tmpl, html);
    return post(doc.dump(-1, ' ', false, json::error_handler_t::replace));
  }

  /// One answer covers the whole batch: every notification shares its outcome (and X-Message-Id).
  [[nodiscard]] std::vector<Outcome> classify_batch(const http::Response& r, std::size_t count) const override {
    return std::vector<Outcome>(count, classify(r));
  }

  [[nodiscard]] bool has_receipts() const override { return !verification_key_.empty(); }

  /// The Event Webhook's signature: ECDSA P-256/SHA-256 over timestamp + body, base64 DER.
  [[nodiscard]] ReceiptCheck verify_receipt(const InboundRequest& r) const override {
    if (verification_key_.empty()) return {404, "no receipts"};
    const std::string signature = r.header("x-twilio-email-event-webhook-signature");
    const std::string timestamp = r.header("x-twilio-email-event-webhook-timestamp");
    if (signature.empty() || timestamp.empty()) return {401, "missing Event Webhook signature headers"};
    std::int64_t ts = 0;
    auto [ptr, ec] = std::from_chars(timestamp.data(), timestamp.data() + timestamp.size(), ts);
    if (ec != std::errc() || ptr != timestamp.data() + timestamp.size()) return {401, "malformed Event Webhook timestamp"};
    std::string der;
    try {
      der = crypto::base64_decode(signature);
    } catch (const std::exception&) {
      return {401, "malformed Event Webhook signature"};
    }
    if (!crypto::verify_es256_der(verification_key_, timestamp + r.body, der)) {
      return {403, "Event Webhook signature does not match"};
    }
    const std::int64_t skew = r.now_ms / 1000 - ts;
    if (skew > event_tolerance_s || skew < -event_tolerance_s) return {403, "stale Event Webhook timestamp"};
    return {};
  }

  [[nodiscard]] std::vector<Receipt> parse_receipt(const InboundRequest& r) const override {
    const json doc = json::parse(r.body, nullptr, false);
    std::vector<Receipt> out;
    if (doc.is_object()) {
      out.push_back(receipt_of(doc));
    } else if (doc.is_array()) {
      out.reserve(doc.size());
      for (const json& e : doc) {
        if (e.is_object()) out.push_back(receipt_of(e));
      }
    } else {
      throw std::invalid_argument("not a SendGrid event batch (a JSON array)");
    }
    return out;
  }

 private:
  /// subject = data.subject when a string, else settings.subject, else the notification type.
  [[nodiscard]] std::string subject_of(const Notification& n) const {
    if (n.data_json.find("\"subject\"") != std::string::npos) {
      const json data = json::parse(n.data_json, nullptr, false);
      if (data.is_object()) {
        auto it = data.find("subject");
        if (it != data.end() && it->is_string()) return it->get<std::string>();
      }
    }
    if (!subject_.empty()) return subject_;
    return n.type.empty() ? std::string("notification") : n.type;
  }

  /// The content blocks: text/plain, then text/html when there is one (SendGrid wants this order).
  [[nodiscard]] static json contents(const std::string& text, const std::string& html) {
    json out = json::array({{{"type", "text/plain"}, {"value", text}}});
    if (!html.empty()) out.push_back({{"type", "text/html"}, {"value", html}});
    return out;
  }

  [[nodiscard]] json envelope(const std::string& subject) const {
    json from = {{"email", from_}};
    if (!from_name_.empty()) from["name"] = from_name_;
    return json{{"from", std::move(from)}, {"subject", subject}};
  }

  [[nodiscard]] http::Request post(std::string body) const {
    http::Request req;
    req.method = "POST";
    req.url = url_;
    req.timeout = std::chrono::milliseconds(config_.timeout_ms);
    req.body = std::move(body);
    req.headers.reserve(2 + config_.headers.size());
    req.headers.emplace_back("Content-Type: application/json");
    req.headers.emplace_back("Authorization: Bearer " + api_key_);
    for (const auto& [k, v] : config_.headers) req.headers.emplace_back(k + ": " + v);
    return req;
  }

  ProviderConfig config_;
  std::string url_;
  std::string from_;
  std::string from_name_;
  std::string subject_;
  std::string api_key_;
  std::string verification_key_;  ///< "" = no signed Event Webhook, no receipts
};

}  // namespace

std::unique_ptr<Adapter> make_sendgrid(const ProviderConfig& c) { return std::make_unique<SendgridAdapter>(c); }

}  // namespace herald::adapters
