#pragma once
/// Providers: configuration, and adapters that build a provider's request and classify its answer.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "herald/http_client.hpp"
#include "herald/notification.hpp"
#include "herald/plan.hpp"

namespace herald {

/// How a provider answered one attempt.
enum class OutcomeKind {
  accepted,           ///< taken; provider_message_id set when the provider gave one
  retryable,          ///< try this provider again after a backoff (timeouts, 429, 5xx)
  permanent,          ///< this provider will not take it: fail over to the next provider
  recipient_invalid,  ///< the address is bad: no provider will succeed
};
[[nodiscard]] std::string_view to_string(OutcomeKind k) noexcept;

struct Outcome {
  OutcomeKind kind = OutcomeKind::retryable;
  std::string provider_message_id;
  std::int64_t retry_after_ms = -1;  ///< from Retry-After, -1 when absent
  std::string error;                 ///< short, secret-free description
};

/// A configured provider instance.
struct ProviderConfig {
  std::string name;
  std::string kind;   ///< "sandbox" | "webhook"
  std::string url;    ///< sandbox: the sandbox's base URL; webhook: the endpoint
  int concurrency = 64;          ///< requests in flight at most
  int max_attempts = 0;          ///< attempts before failover; 0 = the engine's retry policy
  std::int64_t timeout_ms = 10'000;
  std::map<std::string, std::string> headers;  ///< extra request headers (values never logged)
};

/// Throws ConfigError "providers.<name>.<field>: <reason>".
void validate(const ProviderConfig& c);

/// What an adapter needs to build one request.
struct SendContext {
  const Notification& notification;
  const Plan& plan;
  const std::string& text;  ///< the rendered template
  int attempt = 1;          ///< overall attempt number of this notification
  bool in_doubt = false;    ///< a resend after a crash left the previous attempt's outcome unknown
};

class Adapter {
 public:
  virtual ~Adapter() = default;
  [[nodiscard]] virtual http::Request build(const SendContext& ctx) const = 0;
  [[nodiscard]] virtual Outcome classify(const http::Response& r) const = 0;
};

/// Throws ConfigError for an unknown kind or a bad field.
[[nodiscard]] std::unique_ptr<Adapter> make_adapter(const ProviderConfig& c);

/// Classification shared by JSON-over-HTTP providers: 2xx accepted, 408/425/429/5xx and transport
/// failures retryable, other 4xx permanent; a JSON error code naming an invalid recipient wins.
[[nodiscard]] Outcome classify_http(const http::Response& r);

/// Retry-After as delta-seconds or an HTTP-date; -1 when absent or unreadable.
[[nodiscard]] std::int64_t parse_retry_after_ms(std::string_view value, std::int64_t now_ms);

/// Fills "{name}", "{a.b}" and "{name|default}" from a JSON object; "{{" and "}}" are literal braces.
/// A missing variable without a default renders as empty.
[[nodiscard]] std::string render_template(std::string_view tmpl, const std::string& data_json);

}  // namespace herald
