#pragma once
/// The sandbox: a loopback HTTP server that answers like the real providers (Twilio, SendGrid, FCM,
/// APNs, Slack) and like herald's own API, records what it accepts, sends status callbacks and
/// injects faults on request. Pointing an adapter's base URL at it is the only change a provider
/// configuration needs (docs/providers.md, "The sandbox"). Used by the tests, the demo and the
/// benchmarks.
///
/// Provider paths (shapes, errors and magic addresses per docs/providers.md):
///   POST /2010-04-01/Accounts/{sid}/Messages.json, GET …/Messages/{Sid}.json, GET …/Messages.json?To=
///   POST /v3/mail/send (+ the Event Webhook to the URL set with PUT /_sandbox/callbacks/sendgrid)
///   POST /token, POST /v1/projects/{project}/messages:send       (FCM)
///   POST /3/device/{token}                                         (APNs; also over h2c)
///   POST /services/{T}/{B}/{X}                                     (Slack)
/// herald's own API (JSON everywhere):
///   POST /v1/{provider}/messages        a send; recorded when accepted; 202 {"id":"sbx-N","status":"accepted"};
///                                       with "callback_url" in the body, signed JSON receipts follow
///   GET  /v1/{provider}/messages/{id}   {"id","status","idempotency_key",...}; 404 when unknown
///   GET  /v1/{provider}/messages[?idempotency_key=K]  {"messages":[...]}
///   POST /hooks/{name}                  a generic webhook target; recorded as provider "hook:{name}"; 200 "ok"
///   GET  /                              the catcher page (live list, detail view, fault and callback forms)
///   GET  /_sandbox/messages?after=SEQ[&wait_ms=N][&limit=L]  long poll: {"last_seq","messages":[newer than SEQ]}
///   GET  /_sandbox/messages[?service=S] recorded messages, oldest first (provider=P is the same filter)
///   DELETE /_sandbox/messages           forget all records and counters
///   GET  /_sandbox/stats                {"accepted":N,"rejected":N,"by_provider":{...}}
///   PUT  /_sandbox/faults/{provider}    set the faults for one provider ("*" = every provider without its own)
///   DELETE /_sandbox/faults             clear all faults
/// Also:
///   GET  /_sandbox/faults               {"provider": {faults...}, ...}
///   GET  /_sandbox/faults/{provider}    that provider's faults, 404 when none are set
///   DELETE /_sandbox/faults/{provider}  clear one provider's faults
///   GET  /_sandbox/health               {"ok":true}
///   GET  /_sandbox/keys                 {"sendgrid_verification_key","signing_secret"}
///   PUT  /_sandbox/callbacks/{service}  {"enabled":true,"delay_ms":50,"url":"…"} ("*" = every service)
///   PUT  /_sandbox/settings/fcm         {"token_ttl_s":N};  PUT /_sandbox/settings/slack {"rate_per_s","burst"}
/// herald-API errors are {"error":{"code":...,"message":...}}: 404 for unknown paths, 405 (with Allow) for a
/// wrong method, 400 for bad fault JSON (the message names the field). Injected faults answer
/// {"error":{"code":...}}: "outage" (503), "rate_limited" (429 + Retry-After), error_code or
/// "injected" (error_status); on provider paths faults are rendered in that provider's error
/// format. Faults are keyed by service ("twilio", "sendgrid", "fcm", "apns", "slack") or by /v1
/// provider name. A message's status turns final `delay_ms` after acceptance whether or not its
/// callback is sent. A send is recorded when it is received and accepted, before any
/// latency, so a client that gives up on a slow answer leaves a record behind (a lost answer).
/// Ids "sbx-N" count from 1 for the life of the server; clearing records does not reuse them.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace herald::sandbox {

/// Faults injected into answers. Drawn per request from a seeded generator, in this order:
/// outage, rate limit (429), error, then latency is added to whatever is answered.
struct Faults {
  double error_rate = 0.0;                 ///< share of requests answered with error_status
  int error_status = 500;                  ///< status of an injected error, 100..599
  std::string error_code;                  ///< optional provider error code put in the JSON body
  double rate_limit_rate = 0.0;            ///< share of requests answered 429
  int retry_after_s = 1;                   ///< Retry-After header on a 429
  std::chrono::milliseconds latency{0};    ///< added before answering (timer, not a blocked thread)
  std::int64_t outage_until_ms = 0;        ///< epoch ms; until then every request gets 503

  [[nodiscard]] nlohmann::json to_json() const;
  /// Throws std::invalid_argument naming the field on bad input ("faults.error_rate: must be
  /// between 0 and 1"). Unknown keys are rejected; missing keys keep their defaults. Also accepts
  /// "outage_for_ms" (relative), which sets outage_until_ms = now + value.
  static Faults from_json(const nlohmann::json& j);
};

class Server {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;               ///< 0 = any free port
    unsigned threads = 1;                 ///< io_context threads (0 counts as 1)
    std::uint64_t seed = 42;
    /// Signs herald JSON receipts (X-Herald-Signature); published at /_sandbox/keys.
    std::string signing_secret = "sandbox-secret";
    /// -1 = off; otherwise also serve the same handlers over HTTP/2 cleartext (0 = any free port).
    int h2c_port = -1;
  };

  /// Status callback settings of one service (as PUT /_sandbox/callbacks/{service} takes).
  struct Callbacks {
    bool enabled = true;
    std::chrono::milliseconds delay{50};
    std::string url;  ///< SendGrid's Event Webhook URL; the others take the URL from each request
  };

  /// Binds and starts serving on its own threads. Throws std::runtime_error if the bind fails.
  explicit Server(Options options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] std::string url() const;  ///< "http://127.0.0.1:PORT"
  /// The h2c listener's port and URL; 0 / empty when Options::h2c_port was -1.
  [[nodiscard]] std::uint16_t h2c_port() const;
  [[nodiscard]] std::string h2c_url() const;
  /// {"sendgrid_verification_key": base64 DER public key, "signing_secret": ...}.
  [[nodiscard]] nlohmann::json keys() const;
  /// Sets one service's callback settings ("*" = every service without its own).
  void set_callbacks(const std::string& service, const Callbacks& callbacks);

  void set_faults(const std::string& provider, const Faults& faults);
  void clear_faults();
  /// Recorded messages (optionally one service's), oldest first. Each:
  /// {"seq","provider","service","id","received_at_ms","path","headers":{lower-case x-* and
  /// idempotency-key},"body","method","request_headers":{every header, credentials masked},
  /// "timeline":[{"at_ms","status","error_code"}]} where "body" is the parsed JSON when the body is JSON, else the raw
  /// string; "path" excludes the query string, which is added as "query" when there is one. Also,
  /// when known: "to", "subject", "text", "status" (in force now), "error_code" and service fields
  /// (Twilio "account_sid"/"from", SendGrid "x_message_id"/"custom_args"/"content", ...).
  [[nodiscard]] nlohmann::json messages(const std::string& provider = {}) const;
  [[nodiscard]] nlohmann::json stats() const;
  void clear();
  /// Idempotent; the destructor calls it. Joins the io threads and closes every connection
  /// (answers still waiting on a latency timer are dropped). Not to be called from a handler.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::sandbox
