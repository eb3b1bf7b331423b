#pragma once
/// One entry of the delivery log: a state change or decision about one notification.
#include <cstdint>
#include <string>
#include <string_view>

#include "herald/notification.hpp"

namespace herald {

/// The version of the delivery log's line format ("v" in every line; docs/delivery-log.md).
inline constexpr int log_schema_version = 1;

/// Why an attempt or a notification did not succeed, in words analysis can group by.
enum class ErrorClass : std::uint8_t {
  none,               ///< not a failure
  transport,          ///< no HTTP answer: refused, reset, DNS, TLS
  timeout,            ///< no answer within the provider's timeout
  rate_limited,       ///< 429 (or the provider's own rate-limit answer)
  provider_error,     ///< the provider answered with an error (5xx, or a 4xx about the request)
  recipient_invalid,  ///< the address is unusable (invalid number, unregistered token, hard bounce)
  opted_out,          ///< the recipient opted out on this channel
  suppressed,         ///< not sent: the address is on the suppression list
  template_error,     ///< the message could not be built from the plan and the data
  expired,            ///< expires_at passed before it could be sent
  cancelled,          ///< cancelled by the caller
  no_provider,        ///< every provider of the plan failed or none could serve it
  routing_error,      ///< the rule raised, or returned no usable plan
};
inline constexpr int error_class_count = 13;
[[nodiscard]] std::string_view to_string(ErrorClass c) noexcept;

/// What an event records. Values are not persisted (the store and the log keep the name): the
/// order may change, the names may not (docs/delivery-log.md).
enum class EventKind : std::uint8_t {
  unknown,          ///< a name this build does not know (read from a newer store)
  // intake
  received, queued, deduplicated, retried,
  // delivery
  routed, sending, accepted, attempt_failed, retry_scheduled, failed_over, in_doubt, lookup, reconciled,
  // final states
  completed, expired, dead_lettered, cancelled, suppressed, opted_out,
  // receipts
  receipt, delivered, delivery_failed, bounced, deferred, opened, receipt_rejected,
  // the store (notification 0)
  store_degraded, store_recovered,
  // plans with many steps, and the rule's own decisions
  step_started, step_succeeded, step_failed, step_cancelled, acknowledged, skipped, postponed,
  // alert rules (notification 0; docs/alerts.md)
  alert_firing, alert_resolved,
  // a provider's circuit breaker (notification 0)
  circuit_opened, circuit_half_open, circuit_closed,
};
inline constexpr int event_kind_count = 41;
static_assert(static_cast<int>(EventKind::circuit_closed) + 1 == event_kind_count);
[[nodiscard]] std::string_view to_string(EventKind k) noexcept;
/// The kind named `name`; EventKind::unknown for a name this build does not know.
[[nodiscard]] EventKind parse_event_kind(std::string_view name) noexcept;

struct Event {
  Id notification_id = 0;
  std::int64_t seq = 0;        ///< global, increasing: orders events of one notification
  std::int64_t ts_us = 0;      ///< wall clock, microseconds since epoch
  EventKind kind = EventKind::unknown;
  int attempt = 0;             ///< attempt number this event belongs to (0 = none)
  std::string provider;        ///< provider name when one is involved
  std::int64_t latency_us = -1;  ///< provider round trip, -1 when not applicable
  int http_status = 0;         ///< provider's HTTP status, 0 when none
  std::string detail;          ///< reason, error text or provider message id
  ErrorClass error_class = ErrorClass::none;
  double cost = -1;            ///< the provider's price of an accepted attempt; -1 = none
  int step = -1;               ///< the plan step it belongs to, in a plan with many steps; -1 = none
  std::string provider_code;   ///< on attempt_failed: the provider's own error code (21211, UNREGISTERED, BadDeviceToken)
  int segments = 0;            ///< on an accepted SMS: the parts the text is sent in (0 = not SMS)
  std::string alert;           ///< on alert_firing / alert_resolved: the alert's name
  // Log only (not rows): who and how.
  std::string recipient_id;
  std::string channel;         ///< once routed
  // Copied for the JSON Lines log so analysis needs no join:
  std::string type;
  std::string tenant;
  Priority priority = Priority::normal;
};

/// An event about notification `n` at its attempt `attempt`, carrying what the JSON Lines log
/// copies so that analysis needs no join (type, tenant, priority, recipient). A step of a
/// multi-step plan records under its parent's id, with its step.
[[nodiscard]] Event make_event(const Notification& n, int attempt, EventKind kind);

}  // namespace herald
