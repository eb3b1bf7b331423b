#pragma once
/// What a rule returns, and the interface through which the engine calls rules.
#include <string>
#include <vector>

#include "herald/notification.hpp"

namespace herald {

class ProviderHealthSource;  // circuit_breaker.hpp

/// One step of delivery: a channel, providers in failover order and a template.
/// (Multi-step cascades arrive with the orchestration work; a plan has one step today.)
struct Plan {
  std::string channel;
  std::vector<std::string> providers;  ///< failover order: the next is tried when one fails for good
  std::string template_text;           ///< "{name}" / "{name|default}" placeholders filled from data
  bool batch = false;                  ///< a provider that batches (SendGrid) may carry many of these in one request
};

/// A rule's answer for one notification: a plan, or why there is none (the notification is
/// then dead-lettered with that text).
struct RouteResult {
  bool ok = false;
  Plan plan;
  std::string error;
};

/// Maps notifications to plans. The engine calls route() from its loop thread, in batches.
/// Implementations must not do I/O and must return exactly one result per notification.
class Router {
 public:
  virtual ~Router() = default;
  virtual std::vector<RouteResult> route(const std::vector<const Notification*>& batch) = 0;
  /// As route(), for rules that read the providers' health (circuit state, failure rate, p99,
  /// cost): `health` is readable during this call only. The engine calls this one.
  virtual std::vector<RouteResult> route_with_health(const std::vector<const Notification*>& batch,
                                                     const ProviderHealthSource& health) {
    (void)health;
    return route(batch);
  }
};

}  // namespace herald
