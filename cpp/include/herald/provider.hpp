#pragma once
/// Providers: configuration, and adapters that build a provider's request and classify its answer.
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>
#include <memory>
#include <string>
#include <string_view>

#include "herald/errors.hpp"
#include "herald/circuit_breaker.hpp"
#include "herald/event.hpp"
#include "herald/http_client.hpp"
#include "herald/notification.hpp"
#include "herald/plan.hpp"

namespace herald {

/// How a provider answered one attempt.
enum class OutcomeKind {
  accepted,             ///< taken; provider_message_id set when the provider gave one
  retryable,            ///< try this provider again after a backoff (timeouts, 429, 5xx)
  permanent,            ///< this provider will not take it: fail over to the next provider
  recipient_invalid,    ///< the address is bad (invalid number, unregistered token): no provider will succeed
  recipient_opted_out,  ///< the recipient opted out on this channel (e.g. replied STOP): record and stop
};
[[nodiscard]] std::string_view to_string(OutcomeKind k) noexcept;
/// The error class of a provider answer that was not an acceptance (none for an acceptance).
[[nodiscard]] ErrorClass error_class_of(OutcomeKind k, const http::Response& resp) noexcept;

struct Outcome {
  OutcomeKind kind = OutcomeKind::retryable;
  std::string provider_message_id;
  std::int64_t retry_after_ms = -1;  ///< from Retry-After, -1 when absent
  std::string error;                 ///< short, secret-free description ("HTTP 400: 21211")
  /// The provider's own word for the refusal, from its documented error body: Twilio's `code`
  /// (21211), FCM's errorCode or status (UNREGISTERED), APNs' reason (BadDeviceToken), Slack's
  /// error (invalid_payload), SendGrid's first error message, an SMTP enhanced status (5.1.1),
  /// herald's own `error.code`. Empty when the answer had none (or for an acceptance).
  std::string provider_code;
};

/// A configured provider instance. Built from TOML or a Python dict; secrets are resolved (from
/// environment variables or files) before they get here and are never logged or put in errors.
struct ProviderConfig {
  std::string name;
  std::string kind;  ///< sandbox | webhook | twilio | sendgrid | smtp | fcm | apns | slack
  /// Base URL. Empty = the real service's (https://api.twilio.com, https://api.sendgrid.com, ...).
  /// Point it at the sandbox to test: no other change is needed. webhook/slack: the endpoint itself.
  std::string url;
  int concurrency = 64;          ///< requests in flight at most
  int max_attempts = 0;          ///< attempts before failover; 0 = the engine's retry policy
  std::int64_t timeout_ms = 10'000;
  double rate_per_s = 0;         ///< sends per second at most (token bucket); 0 = unlimited
  double cost_per_message = 0;   ///< recorded with each accepted attempt, in the account's currency
  CircuitConfig circuit;         ///< when its circuit opens and how it comes back (circuit_* fields)
  std::map<std::string, std::string> headers;   ///< extra request headers (values never logged)
  std::map<std::string, std::string> settings;  ///< kind-specific, not secret (from, account_sid, project_id, topic, ...)
  std::map<std::string, std::string> secrets;   ///< kind-specific secret values (auth_token, api_key, private_key, ...)
};

/// Throws ConfigError "providers.<name>.<field>: <reason>" (never quoting a secret's value).
void validate(const ProviderConfig& c);

/// What an adapter needs to build one request.
struct SendContext {
  const Notification& notification;
  const PlanStep& plan;  ///< the plan step this attempt carries out
  const std::string& text;  ///< the rendered template
  int attempt = 1;          ///< overall attempt number of this notification
  bool in_doubt = false;    ///< a resend after a crash left the previous attempt's outcome unknown
  std::int64_t now_ms = 0;
  /// Where the provider should POST delivery receipts for this notification ("" = receipts off).
  /// Already carries the notification id (".../receipts/<provider>?hid=<id>").
  std::string receipt_url;
};

/// A delivery receipt's meaning, common to every provider.
enum class ReceiptStatus {
  progress,      ///< queued/sent/processed: not final, recorded only
  delivered,     ///< reached the device or mailbox
  failed,        ///< undelivered / failed / dropped: final, the address may still be good
  bounced_soft,  ///< temporary bounce or deferral: not final
  bounced_hard,  ///< permanent bounce or unregistered token: the address is unusable from now on
  opened,        ///< opened or clicked (after delivered)
  opted_out,     ///< unsubscribe / spam report / STOP: record the opt-out
};
[[nodiscard]] std::string_view to_string(ReceiptStatus s) noexcept;

/// One receipt as the provider described it.
struct Receipt {
  Id notification_id = 0;           ///< from the callback URL or custom args; 0 = unknown
  std::string provider_message_id;
  ReceiptStatus status = ReceiptStatus::progress;
  std::string provider_status;      ///< the provider's own word ("undelivered", "bounce", ...)
  std::string error_code;           ///< the provider's error code, if any
};

/// An HTTP request the receipt server received, as an adapter sees it.
struct InboundRequest {
  std::string method;
  std::string url;    ///< the full URL the provider called: the public base + path + query (what Twilio signs)
  std::string path;   ///< without the query
  std::string query;  ///< without the '?'
  std::vector<std::pair<std::string, std::string>> headers;  ///< names lower-cased
  std::string body;
  std::int64_t now_ms = 0;
  [[nodiscard]] std::string header(std::string_view lower_name) const;
};

/// Verdict on an inbound receipt's authenticity: status 0 = genuine, else 401 (no or malformed
/// signature) or 403 (wrong signature or stale timestamp), with a secret-free reason.
struct ReceiptCheck {
  int status = 0;
  std::string reason;
};

/// What reconciliation needs to ask a provider about one attempt.
struct LookupContext {
  const Notification& notification;
  const std::string& text;                 ///< the rendered text of the attempt (to match a message when no id is known)
  const std::string& provider_message_id;  ///< empty when a crash lost the answer (in doubt)
  std::int64_t attempt_started_ms = 0;
};

/// The provider's answer to a lookup.
struct LookupResult {
  enum class Found { yes, no, unknown } found = Found::unknown;  ///< unknown: the lookup itself failed, ask again later
  std::string provider_message_id;
  Receipt receipt;  ///< the message's current status when found
  std::string error;
};

class Adapter {
 public:
  virtual ~Adapter() = default;

  /// The one request for one attempt. Called on the engine loop thread only.
  [[nodiscard]] virtual http::Request build(const SendContext& ctx) const = 0;
  [[nodiscard]] virtual Outcome classify(const http::Response& r) const = 0;

  /// The recipient's address on this adapter's channel, read from the notification's recipient
  /// JSON (phone for SMS, email, push token); "" when the provider has none per recipient (chat
  /// webhooks) or the recipient lacks it. Used for unusable-address and opt-out records.
  [[nodiscard]] virtual std::string address(const Notification& n) const;
  /// The same for a plan step on `channel`: adapters that serve several channels (the sandbox)
  /// pick the field by channel. Defaults to address(n).
  [[nodiscard]] virtual std::string address_for(const Notification& n, std::string_view /*channel*/) const {
    return address(n);
  }

  /// Whether this provider can carry a message on `channel` (Twilio: sms; SendGrid and SMTP:
  /// email; FCM and APNs: push; Slack: chat; the webhook and the sandbox: any).
  [[nodiscard]] virtual bool serves(std::string_view /*channel*/) const { return true; }
  /// Whether a request needs the recipient's address on this provider (a phone, an email, a
  /// token): without one the provider is skipped, since it could only refuse the request.
  [[nodiscard]] virtual bool needs_address() const { return false; }

  // ---- batching (email) ------------------------------------------------------
  /// How many notifications one request may carry (1 = no batching).
  [[nodiscard]] virtual std::size_t max_batch() const { return 1; }
  /// One request for several notifications that share a plan step (same template and text
  /// apart from per-recipient variables). Only called when max_batch() > 1.
  [[nodiscard]] virtual http::Request build_batch(const std::vector<SendContext>& batch) const;
  /// One outcome per notification of the batch, in order.
  [[nodiscard]] virtual std::vector<Outcome> classify_batch(const http::Response& r, std::size_t count) const;

  // ---- access tokens (FCM's OAuth2) ---------------------------------------------
  /// False while the adapter cannot build requests (no access token yet). Loop thread only.
  [[nodiscard]] virtual bool ready(std::int64_t /*now_ms*/) const { return true; }
  /// A token request to make now (none yet, or the current one expires soon), or nullopt.
  /// After it returns a request, it returns nullopt until on_token_response is called.
  [[nodiscard]] virtual std::optional<http::Request> token_request(std::int64_t /*now_ms*/) { return std::nullopt; }
  virtual void on_token_response(const http::Response& /*r*/, std::int64_t /*now_ms*/) {}

  // ---- receipts -------------------------------------------------------------------
  /// Whether the provider sends receipts to the engine's receipt server.
  [[nodiscard]] virtual bool has_receipts() const { return false; }
  [[nodiscard]] virtual ReceiptCheck verify_receipt(const InboundRequest& /*r*/) const { return {404, "no receipts"}; }
  /// The receipts in one verified callback (SendGrid posts a JSON array of events). Throws
  /// std::invalid_argument for a body it cannot read.
  [[nodiscard]] virtual std::vector<Receipt> parse_receipt(const InboundRequest& /*r*/) const { return {}; }
  /// The answer the provider expects on success (Twilio: 200 with an empty TwiML or nothing).
  [[nodiscard]] virtual int receipt_ok_status() const { return 200; }

  // ---- reconciliation ---------------------------------------------------------------
  /// A status query for one attempt, or nullopt when the provider has no status API (or cannot
  /// find a message without its id and ctx.provider_message_id is empty).
  [[nodiscard]] virtual std::optional<http::Request> build_lookup(const LookupContext& /*ctx*/) const {
    return std::nullopt;
  }
  [[nodiscard]] virtual LookupResult parse_lookup(const http::Response& /*r*/, const LookupContext& /*ctx*/) const {
    return {};
  }
};

/// Throws ConfigError for an unknown kind or a bad field.
[[nodiscard]] std::unique_ptr<Adapter> make_adapter(const ProviderConfig& c);

/// Classification shared by JSON-over-HTTP providers: 2xx accepted, 408/425/429/5xx and transport
/// failures retryable, other 4xx permanent; a JSON error code naming an invalid recipient wins.
[[nodiscard]] Outcome classify_http(const http::Response& r);

/// Retry-After as delta-seconds or an HTTP-date; -1 when absent or unreadable.
[[nodiscard]] std::int64_t parse_retry_after_ms(std::string_view value, std::int64_t now_ms);

/// A template that cannot be filled: what() is "template: missing variable 'code'".
class TemplateError : public Error {
 public:
  using Error::Error;
};

/// Fills "{name}", "{a.b}" and "{name|default}" from a JSON object; "{{" and "}}" are literal braces.
/// A variable with neither a value (null counts as none) nor a default throws TemplateError, so
/// a message is never sent with a blank; "{name|}" (an empty default) renders as empty.
[[nodiscard]] std::string render_template(std::string_view tmpl, const std::string& data_json);

}  // namespace herald
