#pragma once
/// The sandbox: a loopback HTTP server (Beast) that answers like a provider, records what it
/// accepts and injects faults on request. Used by the tests, the demo and the benchmarks.
///
/// HTTP surface (JSON everywhere):
///   POST /v1/{provider}/messages        a send; recorded when accepted; 202 {"id":"sbx-N","status":"accepted"}
///   POST /hooks/{name}                  a generic webhook target; recorded as provider "hook:{name}"; 200 "ok"
///   GET  /_sandbox/messages[?provider=P] recorded messages, oldest first
///   DELETE /_sandbox/messages           forget all records and counters
///   GET  /_sandbox/stats                {"accepted":N,"rejected":N,"by_provider":{...}}
///   PUT  /_sandbox/faults/{provider}    set the faults for one provider ("*" = every provider without its own)
///   DELETE /_sandbox/faults             clear all faults
/// Also:
///   GET  /_sandbox/faults               {"provider": {faults...}, ...}
///   GET  /_sandbox/faults/{provider}    that provider's faults, 404 when none are set
///   DELETE /_sandbox/faults/{provider}  clear one provider's faults
///   GET  /_sandbox/health               {"ok":true}
/// Errors are {"error":{"code":...,"message":...}}: 404 for unknown paths, 405 (with Allow) for a
/// wrong method, 400 for bad fault JSON (the message names the field). Injected faults answer
/// {"error":{"code":...}}: "outage" (503), "rate_limited" (429 + Retry-After), error_code or
/// "injected" (error_status). A send is recorded when it is received and accepted, before any
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
  };

  /// Binds and starts serving on its own threads. Throws std::runtime_error if the bind fails.
  explicit Server(Options options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] std::string url() const;  ///< "http://127.0.0.1:PORT"

  void set_faults(const std::string& provider, const Faults& faults);
  void clear_faults();
  /// Recorded messages (optionally one provider's), oldest first. Each:
  /// {"seq","provider","id","received_at_ms","path","headers":{lower-case x-* and idempotency-key},"body"}
  /// where "body" is the parsed JSON when the body is JSON, else the raw string; "path" excludes
  /// the query string, which is added as "query" when there is one.
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
