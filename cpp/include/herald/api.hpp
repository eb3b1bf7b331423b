#pragma once
/// The HTTP API of `herald serve`, without sockets: which endpoint a request names, JSON bodies to
/// notifications (with the same checks and field names as the Python API), answers to JSON, errors
/// to statuses, and the API-key check. api_server.hpp is the thin shell that carries it over HTTP.
///
/// Ids travel as decimal strings in JSON: they exceed 2^53, where JSON readers lose digits.
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/engine.hpp"
#include "herald/http_server.hpp"
#include "herald/notification.hpp"

namespace herald::api {

/// What a request asks for.
enum class Action {
  send,          ///< POST /v1/notifications
  send_many,     ///< POST /v1/notifications:batch
  by_recipient,  ///< GET /v1/notifications?recipient=&limit=: one recipient's notifications, newest first
  status,        ///< GET /v1/notifications/{id}
  trace,         ///< GET /v1/notifications/{id}/trace
  retry,         ///< POST /v1/notifications/{id}/retry
  cancel,        ///< POST /v1/notifications/{id}/cancel
  dead_letters,  ///< GET /v1/dead-letters?limit=
  suppressions,  ///< GET /v1/suppressions?limit=
  unsuppress,    ///< DELETE /v1/suppressions/{channel}/{address}
  health,        ///< GET /health: the process answers (no key needed)
  ready,         ///< GET /ready: store open and not degraded, not draining (no key needed)
  metrics,       ///< GET /metrics: the Prometheus text format (no key needed)
  openapi,       ///< GET /openapi.json: the API's description (no key needed)
  dashboard,     ///< GET /v1/dashboard?limit=: queues, provider state, counters, recent dead letters
  dashboard_page,  ///< GET /dashboard the page that shows it (no key needed: the page asks for one)
  not_found,     ///< no such endpoint (404)
  bad_method,    ///< the endpoint exists, not with this method (405)
  bad_id,        ///< an id that is not a decimal 64-bit integer (400, field "id")
};

struct Route {
  Action action = Action::not_found;
  Id id = 0;
  std::string channel;  ///< unsuppress
  std::string address;  ///< unsuppress (percent-decoded)
  std::string recipient;  ///< by_recipient
  std::size_t limit = 0;  ///< dead_letters, suppressions, dashboard (0 = the default)
};

/// The endpoint of `method` + `path` (query in `query`). Never throws for bad input: unknown
/// paths give not_found, a bad id bad_id; a bad limit throws ValidationError("limit", ...).
[[nodiscard]] Route route(std::string_view method, std::string_view path, std::string_view query);

/// Whether the endpoint needs an API key (everything under /v1). /metrics needs none, as scrapers
/// expect: it carries counts by type, provider and state, never an address or a payload.
[[nodiscard]] bool needs_key(Action a) noexcept;
/// Whether the endpoint touches the engine (and so is refused while draining).
[[nodiscard]] bool uses_engine(Action a) noexcept;

/// The body as JSON. Throws ValidationError("body", "is not valid JSON: ...") otherwise. An integer
/// too wide for 64 bits is kept as its digits (not rounded to a double) so that it is refused by
/// name, as the Python API refuses it.
[[nodiscard]] nlohmann::json parse_body(std::string_view body);

/// One notification from a JSON object with the keyword names of Engine.send (type, recipient,
/// data, priority, idempotency_key, ordering_key, send_at, expires_at, tenant; null = absent;
/// times in epoch seconds). The checks and texts of the Python binding: unknown fields, text
/// types, recipient as an id or an object with an id, data as an object at most 64 levels deep
/// and 256 KiB of JSON. `prefix` names the item ("notifications[3].").
[[nodiscard]] Notification decode_notification(const nlohmann::json& j, const std::string& prefix = {});
/// A JSON array of such objects; items are named notifications[i].
[[nodiscard]] std::vector<Notification> decode_batch(const nlohmann::json& j);

/// Answers as JSON text. Every id is a decimal string.
[[nodiscard]] nlohmann::json encode(const SendResult& r);
[[nodiscard]] nlohmann::json encode(const StoredNotification& s);
[[nodiscard]] nlohmann::json encode(const Event& e);
[[nodiscard]] nlohmann::json encode(const Suppression& x);
/// GET /v1/dashboard's answer: {"at","stats","health","queues","scheduled","providers","last_hour",
/// "dead_letters"}; each provider with its circuit breaker and its attempts per minute.
[[nodiscard]] nlohmann::json dashboard(Engine& engine, std::size_t dead_letters);
/// JSON text of `j`; bytes that are not UTF-8 are replaced rather than refused.
[[nodiscard]] std::string dump(const nlohmann::json& j);

/// {"error":{"type":<Python exception name>,"field":...,"message":...}} with the status the
/// client maps back: ValidationError 400, NotFound 404, IdempotencyConflict and InvalidState 409,
/// StoreError and EngineClosed 503, anything else 500.
[[nodiscard]] http::ServerResponse error_for(std::exception_ptr error);
/// The same shape for errors of the API itself (`type` e.g. "Unauthorized").
[[nodiscard]] http::ServerResponse api_error(unsigned status, std::string_view type, std::string_view message,
                                             std::string_view field = {});

/// Outcome of the API-key check.
enum class KeyCheck { ok, missing, wrong };
/// Checks `Authorization: Bearer <key>` against SHA-256 hashes (lower-case hex) of the keys.
/// Compares every hash in constant time, so the time says nothing of which key came close.
[[nodiscard]] KeyCheck check_key(std::string_view authorization, const std::vector<std::string>& key_sha256_hex);

/// Carries out one routed request on the engine (blocking: the engine waits for its store).
/// Errors of the engine become error_for() answers.
[[nodiscard]] http::ServerResponse perform(Engine& engine, const Route& r, const std::string& body);

}  // namespace herald::api
