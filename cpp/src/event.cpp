#include "herald/event.hpp"

#include <array>

namespace herald {

namespace {

constexpr std::array<std::string_view, event_kind_count> event_kind_names = {
    "unknown",   "received",      "queued",       "deduplicated",    "retried",   "routed",
    "sending",   "accepted",      "attempt_failed", "retry_scheduled", "failed_over", "in_doubt",
    "lookup",    "reconciled",    "completed",    "expired",         "dead_lettered", "cancelled",
    "suppressed", "opted_out",    "receipt",      "delivered",       "delivery_failed", "bounced",
    "deferred",  "opened",        "receipt_rejected", "store_degraded", "store_recovered",
    "step_started", "step_succeeded", "step_failed", "step_cancelled", "acknowledged", "skipped", "postponed",
    "alert_firing", "alert_resolved", "circuit_opened", "circuit_half_open", "circuit_closed"};

}  // namespace

std::string_view to_string(EventKind k) noexcept {
  const auto i = static_cast<std::size_t>(k);
  return i < event_kind_names.size() ? event_kind_names[i] : "unknown";
}

EventKind parse_event_kind(std::string_view name) noexcept {
  for (std::size_t i = 1; i < event_kind_names.size(); ++i) {
    if (event_kind_names[i] == name) return static_cast<EventKind>(i);
  }
  return EventKind::unknown;
}

Event make_event(const Notification& n, int attempt, EventKind kind) {
  Event e;
  e.notification_id = n.parent_id != 0 ? n.parent_id : n.id;
  if (n.parent_id != 0) e.step = n.step;
  e.kind = kind;
  e.attempt = attempt;
  e.type = n.type;
  e.tenant = n.tenant;
  e.priority = n.priority;
  e.recipient_id = n.recipient_id;
  return e;
}

}  // namespace herald
