#include "adapters.hpp"

#include <nlohmann/json.hpp>

#include "herald/crypto.hpp"
#include "herald_signature.hpp"

namespace herald::adapters {

namespace {

using json = nlohmann::json;

/// The sandbox's status word for a message, as a receipt of notification `id`.
Receipt receipt_from_record(const json& m, Id id) {
  Receipt r;
  r.notification_id = id;
  if (auto it = m.find("id"); it != m.end() && it->is_string()) r.provider_message_id = it->get<std::string>();
  if (auto it = m.find("status"); it != m.end() && it->is_string()) r.provider_status = it->get<std::string>();
  r.status = herald_signature::status_of(r.provider_status);
  if (auto it = m.find("error_code"); it != m.end()) {
    if (it->is_string()) r.error_code = it->get<std::string>();
    if (it->is_number_integer()) r.error_code = it->dump();
  }
  return r;
}

/// herald's own sandbox API: POST {url}/v1/{provider}/messages; receipts in herald's JSON,
/// signed with X-Herald-Signature; a status API for reconciliation.
class SandboxAdapter final : public Adapter {
 public:
  explicit SandboxAdapter(ProviderConfig c)
      : config_(std::move(c)),
        url_(base_url(config_, "") + "/v1/" + config_.name + "/messages"),
        secret_(config_.secrets.count("signing_secret") ? config_.secrets.at("signing_secret") : "sandbox-secret"),
        channel_(setting_or(config_, "channel", "")) {}

  [[nodiscard]] http::Request build(const SendContext& ctx) const override {
    return herald_json_post(config_, url_, ctx);
  }
  [[nodiscard]] Outcome classify(const http::Response& r) const override { return classify_http(r); }

  /// The address field follows settings.channel when given (sms: phone, email: email, else
  /// push_token); without it, the first of phone, email, push_token the recipient has.
  [[nodiscard]] std::string address(const Notification& n) const override { return address_for(n, channel_); }
  /// The plan step's channel decides when settings.channel is not given.
  [[nodiscard]] std::string address_for(const Notification& n, std::string_view step_channel) const override {
    const std::string_view channel = channel_.empty() ? step_channel : std::string_view(channel_);
    const char* first = channel == "sms" ? "phone" : channel == "email" ? "email" : channel.empty() ? "" : "push_token";
    // One parse of the recipient for every field looked at.
    const auto recipient = nlohmann::json::parse(n.recipient_json, nullptr, false);
    if (!recipient.is_object()) return {};
    auto field = [&](const char* name) -> std::string {
      auto it = recipient.find(name);
      return it != recipient.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    if (*first != '\0') {
      if (std::string a = field(first); !a.empty()) return a;
    }
    for (const char* f : {"phone", "email", "push_token"}) {
      if (std::string a = field(f); !a.empty()) return a;
    }
    return {};
  }

  [[nodiscard]] bool has_receipts() const override { return true; }
  [[nodiscard]] ReceiptCheck verify_receipt(const InboundRequest& r) const override {
    return herald_signature::verify(secret_, r.header("x-herald-signature"), r.body, r.now_ms);
  }
  [[nodiscard]] std::vector<Receipt> parse_receipt(const InboundRequest& r) const override {
    return parse_json_receipts(r);
  }

  [[nodiscard]] std::optional<http::Request> build_lookup(const LookupContext& ctx) const override {
    http::Request req;
    req.method = "GET";
    req.timeout = std::chrono::milliseconds(config_.timeout_ms);
    req.url = ctx.provider_message_id.empty()
                  ? url_ + "?idempotency_key=" + crypto::form_encode("herald-" + std::to_string(ctx.notification.id))
                  : url_ + "/" + crypto::form_encode(ctx.provider_message_id);
    for (const auto& [k, v] : config_.headers) req.headers.emplace_back(k + ": " + v);
    return req;
  }

  /// {"id","status",...} for one message, or {"messages":[...]} (empty: not found).
  [[nodiscard]] LookupResult parse_lookup(const http::Response& r, const LookupContext& ctx) const override {
    if (auto failed = lookup_failure(r, ctx)) return *failed;
    LookupResult out;
    const json doc = json::parse(r.body, nullptr, false);
    const json* record = nullptr;
    if (doc.is_object() && doc.contains("messages")) {
      const json& list = doc["messages"];
      if (!list.is_array()) {
        out.error = "unreadable status answer: " + short_body(r.body);
        return out;
      }
      if (list.empty()) {
        out.found = LookupResult::Found::no;
        return out;
      }
      record = &list.front();
    } else if (doc.is_object()) {
      record = &doc;
    }
    if (record == nullptr || !record->is_object() || !record->contains("status")) {
      out.error = "unreadable status answer: " + short_body(r.body);
      return out;
    }
    out.found = LookupResult::Found::yes;
    out.receipt = receipt_from_record(*record, ctx.notification.id);
    out.provider_message_id = out.receipt.provider_message_id;
    return out;
  }

 private:
  ProviderConfig config_;
  std::string url_;
  std::string secret_;
  std::string channel_;
};

}  // namespace

std::unique_ptr<Adapter> make_sandbox(const ProviderConfig& c) {
  if (c.url.empty()) throw ConfigError(config_error(c, "url", "is required (the sandbox's base URL)"));
  return std::make_unique<SandboxAdapter>(c);
}

}  // namespace herald::adapters
