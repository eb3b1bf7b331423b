#include "adapters.hpp"

namespace herald::adapters {

namespace {

/// A generic JSON POST to one endpoint.
class WebhookAdapter final : public Adapter {
 public:
  explicit WebhookAdapter(ProviderConfig c) : config_(std::move(c)) {}
  [[nodiscard]] http::Request build(const SendContext& ctx) const override {
    return herald_json_post(config_, config_.url, ctx);
  }
  [[nodiscard]] Outcome classify(const http::Response& r) const override { return classify_http(r); }

 private:
  ProviderConfig config_;
};

}  // namespace

std::unique_ptr<Adapter> make_webhook(const ProviderConfig& c) {
  if (c.url.empty()) throw ConfigError(config_error(c, "url", "is required (the endpoint)"));
  return std::make_unique<WebhookAdapter>(c);
}

}  // namespace herald::adapters
