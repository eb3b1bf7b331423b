#include "adapters.hpp"

namespace herald::adapters {

namespace {

/// herald's own sandbox API: POST {url}/v1/{provider}/messages.
class SandboxAdapter final : public Adapter {
 public:
  explicit SandboxAdapter(ProviderConfig c) : config_(std::move(c)) {
    url_ = base_url(config_, "") + "/v1/" + config_.name + "/messages";
  }
  [[nodiscard]] http::Request build(const SendContext& ctx) const override {
    return herald_json_post(config_, url_, ctx);
  }
  [[nodiscard]] Outcome classify(const http::Response& r) const override { return classify_http(r); }

 private:
  ProviderConfig config_;
  std::string url_;
};

}  // namespace

std::unique_ptr<Adapter> make_sandbox(const ProviderConfig& c) {
  if (c.url.empty()) throw ConfigError(config_error(c, "url", "is required (the sandbox's base URL)"));
  return std::make_unique<SandboxAdapter>(c);
}

}  // namespace herald::adapters
