#include "adapters.hpp"

#include "herald_signature.hpp"

namespace herald::adapters {

namespace {

/// herald's JSON message POSTed to one endpoint. With secrets.signing_secret every request is
/// signed (X-Herald-Signature) and the endpoint may post herald's JSON receipts back, signed alike.
class WebhookAdapter final : public Adapter {
 public:
  explicit WebhookAdapter(ProviderConfig c) : config_(std::move(c)) {
    if (auto it = config_.secrets.find("signing_secret"); it != config_.secrets.end()) secret_ = it->second;
  }
  [[nodiscard]] http::Request build(const SendContext& ctx) const override {
    http::Request req = herald_json_post(config_, config_.url, ctx);
    if (!secret_.empty()) {
      req.headers.emplace_back("X-Herald-Signature: " + herald_signature::sign(secret_, ctx.now_ms / 1000, req.body));
    }
    return req;
  }
  [[nodiscard]] Outcome classify(const http::Response& r) const override { return classify_http(r); }

  [[nodiscard]] bool has_receipts() const override { return !secret_.empty(); }
  [[nodiscard]] ReceiptCheck verify_receipt(const InboundRequest& r) const override {
    if (secret_.empty()) return {404, "no receipts"};
    return herald_signature::verify(secret_, r.header("x-herald-signature"), r.body, r.now_ms);
  }
  [[nodiscard]] std::vector<Receipt> parse_receipt(const InboundRequest& r) const override {
    return parse_json_receipts(r);
  }

 private:
  ProviderConfig config_;
  std::string secret_;  ///< "" = unsigned, no receipts
};

}  // namespace

std::unique_ptr<Adapter> make_webhook(const ProviderConfig& c) {
  if (c.url.empty()) throw ConfigError(config_error(c, "url", "is required (the endpoint)"));
  return std::make_unique<WebhookAdapter>(c);
}

}  // namespace herald::adapters
