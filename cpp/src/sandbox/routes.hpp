#pragma once
/// The sandbox's request handlers and the small HTTP helpers they share. A handler is a function
/// from a request to a response, independent of the transport that carried it.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/http_server.hpp"
#include "state.hpp"

namespace herald::sandbox::detail {

using http::ServerRequest;
using http::ServerResponse;

// ---- helpers ------------------------------------------------------------------------------------

/// The first header with this lower-case name, or empty.
[[nodiscard]] std::string header_of(const ServerRequest& req, std::string_view lower_name);
/// The decoded value of `name` in a query string, if present.
[[nodiscard]] std::optional<std::string> query_param(std::string_view query, std::string_view name);
[[nodiscard]] std::string dump(const nlohmann::json& j);
[[nodiscard]] bool starts_with(std::string_view s, std::string_view prefix) noexcept;
[[nodiscard]] std::string html_escape(std::string_view s);
/// "Tue, 04 Jun 2024 10:00:00 +0000".
[[nodiscard]] std::string rfc2822(std::int64_t epoch_ms);

[[nodiscard]] ServerResponse json_response(unsigned status, std::string body);
[[nodiscard]] ServerResponse text_response(unsigned status, std::string body,
                                           std::string content_type = "text/plain; charset=utf-8");
/// herald's own error shape: {"error":{"code":...,"message":...}}.
[[nodiscard]] std::string herald_error_body(std::string_view code, std::string_view message = {});
[[nodiscard]] ServerResponse herald_error(unsigned status, std::string_view code, std::string_view message = {});
[[nodiscard]] ServerResponse method_not_allowed(std::string_view allow);
/// Lower-case x-* and idempotency-key headers, repeated names joined with ", "; credentials
/// among them (x-api-key, x-auth-token, x-*-signature) masked as masked_headers does.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> recorded_headers(const ServerRequest& req);
/// Every header, lower-case, with the values of credentials (Authorization, API keys, tokens,
/// signatures, cookies) masked: a record never holds a secret in full.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> masked_headers(const ServerRequest& req);
/// "Bearer abcd… (40 chars)": the scheme, at most 4 leading characters and the length.
[[nodiscard]] std::string mask_secret(std::string_view value);
/// Sets what every record of `req` shares for the page: the method and the masked headers.
void note_request(Record& rec, const ServerRequest& req);

/// The error formats faults are rendered in.
enum class Dialect { herald, twilio, sendgrid, fcm, apns, slack };
/// A rejected verdict rendered in `dialect`'s error format, with Retry-After and latency.
[[nodiscard]] ServerResponse fault_response(Dialect dialect, const Verdict& v);

/// What a magic address decides (docs/providers.md, "Magic addresses").
enum class Outcome { delivered, undelivered, bounce, soft_bounce, unsubscribe, open };
[[nodiscard]] Outcome email_outcome(std::string_view email);
[[nodiscard]] Outcome phone_outcome(std::string_view phone);

/// herald's signature header value: "t=<t>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>".
[[nodiscard]] std::string herald_signature(std::string_view secret, std::int64_t t, std::string_view body);

// ---- handlers -----------------------------------------------------------------------------------

ServerResponse handle_herald(State& state, const ServerRequest& req);    ///< /v1/{provider}/messages…, /hooks/…
ServerResponse handle_twilio(State& state, const ServerRequest& req);    ///< /2010-04-01/…
ServerResponse handle_sendgrid(State& state, const ServerRequest& req);  ///< /v3/mail/send
ServerResponse handle_fcm_token(State& state, const ServerRequest& req); ///< /token
ServerResponse handle_fcm_send(State& state, const ServerRequest& req);  ///< /v1/projects/{p}/messages:send
ServerResponse handle_apns(State& state, const ServerRequest& req);      ///< /3/device/{token}
ServerResponse handle_slack(State& state, const ServerRequest& req);     ///< /services/{T}/{B}/{X}
ServerResponse handle_control(State& state, const ServerRequest& req);   ///< /_sandbox/…, GET /
/// GET /_sandbox/messages?after=SEQ[&wait_ms=N]: answers through `respond` once a record newer
/// than SEQ exists or N ms pass (the page's live list). False when `req` is not such a request.
bool handle_long_poll(const std::shared_ptr<State>& state, const ServerRequest& req, const http::Respond& respond);
/// Picks the handler by path; 404 in herald's error shape for anything else.
ServerResponse route(State& state, const ServerRequest& req);

}  // namespace herald::sandbox::detail
