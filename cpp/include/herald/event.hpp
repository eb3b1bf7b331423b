#pragma once
/// One entry of the delivery log: a state change or decision about one notification.
#include <cstdint>
#include <string>

#include "herald/notification.hpp"

namespace herald {

struct Event {
  Id notification_id = 0;
  std::int64_t seq = 0;        ///< global, increasing: orders events of one notification
  std::int64_t ts_us = 0;      ///< wall clock, microseconds since epoch
  std::string kind;            ///< received, deduplicated, queued, routed, sending, accepted, ...
  int attempt = 0;             ///< attempt number this event belongs to (0 = none)
  std::string provider;        ///< provider name when one is involved
  std::int64_t latency_us = -1;  ///< provider round trip, -1 when not applicable
  int http_status = 0;         ///< provider's HTTP status, 0 when none
  std::string detail;          ///< reason, error text or provider message id
  // Copied for the JSON Lines log so analysis needs no join:
  std::string type;
  std::string tenant;
  Priority priority = Priority::normal;
};

}  // namespace herald
