#pragma once
/// The built-in adapters, one file each, and what they share. Internal to the core.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "herald/errors.hpp"
#include "herald/provider.hpp"

namespace herald::adapters {

// One factory per kind. Each validates its own settings and secrets and throws ConfigError
// "providers.<name>.<field>: <reason>" without quoting a secret's value.
std::unique_ptr<Adapter> make_sandbox(const ProviderConfig& c);
std::unique_ptr<Adapter> make_webhook(const ProviderConfig& c);
std::unique_ptr<Adapter> make_twilio(const ProviderConfig& c);
std::unique_ptr<Adapter> make_sendgrid(const ProviderConfig& c);
std::unique_ptr<Adapter> make_smtp(const ProviderConfig& c);
std::unique_ptr<Adapter> make_fcm(const ProviderConfig& c);
std::unique_ptr<Adapter> make_apns(const ProviderConfig& c);
std::unique_ptr<Adapter> make_slack(const ProviderConfig& c);

/// "providers.<name>.<field>: <reason>"
[[nodiscard]] std::string config_error(const ProviderConfig& c, std::string_view field, std::string_view reason);
/// The setting's value; throws ConfigError "providers.<name>.settings.<key>: is required" when absent or empty.
[[nodiscard]] const std::string& require_setting(const ProviderConfig& c, const std::string& key);
/// The secret's value; throws ConfigError "providers.<name>.secrets.<key>: is required" when absent or empty.
[[nodiscard]] const std::string& require_secret(const ProviderConfig& c, const std::string& key);
/// The setting or `fallback`.
[[nodiscard]] std::string setting_or(const ProviderConfig& c, const std::string& key, std::string fallback);
/// c.url without trailing slashes, or `real_default` when c.url is empty.
[[nodiscard]] std::string base_url(const ProviderConfig& c, std::string_view real_default);

/// A string field of the notification's recipient JSON object ("" when absent or not a string).
[[nodiscard]] std::string recipient_field(const Notification& n, std::string_view field);

/// herald's own JSON message (id, type, tenant, channel, to, text, data) as a POST with the
/// X-Herald-* and Idempotency-Key headers: what the sandbox and webhook adapters send.
[[nodiscard]] http::Request herald_json_post(const ProviderConfig& c, std::string url, const SendContext& ctx);

/// 408, 425, 429 and 5xx: the provider may take it later.
[[nodiscard]] bool retryable_status(long status) noexcept;
/// Marks `out` retryable, with the answer's Retry-After as the earliest next attempt.
void set_retryable(Outcome& out, const http::Response& r);
/// "timeout" or "transport: <curl's text>", for an answer that never came (status 0).
[[nodiscard]] std::string transport_error_text(const http::Response& r);

/// The start every parse_lookup shares: no answer → unknown; 404 to a query by message id → not
/// found; any other non-2xx → unknown with the error. nullopt when the body is a 2xx to read.
[[nodiscard]] std::optional<LookupResult> lookup_failure(const http::Response& r, const LookupContext& ctx);

/// render_template on data already parsed (any JSON; a non-object has no variables).
[[nodiscard]] std::string render_with(std::string_view tmpl, const nlohmann::json& data);

/// A plan step's content (besides the text) rendered with the notification's data; a field the
/// step leaves empty stays empty. Throws TemplateError for a variable with no value and no default.
struct RenderedContent {
  std::string subject;
  std::string html;
  std::string title;
  std::string image;
  std::vector<std::pair<std::string, std::string>> data;  ///< the step's data templates, rendered, in key order
  [[nodiscard]] bool empty() const noexcept {
    return subject.empty() && html.empty() && title.empty() && image.empty() && data.empty();
  }
};
[[nodiscard]] RenderedContent render_content(const SendContext& ctx);

/// Appends `"title":...,"body":...`: the alert both push providers carry, without its braces. The
/// title is the step's when it has one, else the data's string "title" (none when neither).
void append_push_alert(std::string& body, const std::string& data_json, const std::string& title,
                       const std::string& text);

/// The notification id in a callback URL's `hid` query parameter (0 when absent or malformed): the
/// engine puts it in every receipt URL it hands a provider.
[[nodiscard]] Id callback_hid(const InboundRequest& r);

/// herald's JSON receipts (sandbox and webhook kinds). One receipt posted to a callback URL with
/// `?hid=` belongs to that notification: for a step of a plan with many steps the message's `id`
/// is its parent's, and a receiver that echoes it back still reaches the step's attempt.
[[nodiscard]] std::vector<Receipt> parse_json_receipts(const InboundRequest& r);

/// The body's first 200 bytes with control characters blanked, for error texts.
[[nodiscard]] std::string short_body(const std::string& body);

}  // namespace herald::adapters
