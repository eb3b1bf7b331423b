#pragma once
/// What a rule returns, and the interface through which the engine calls rules.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "herald/notification.hpp"

namespace herald {

class ProviderHealthSource;  // circuit_breaker.hpp

/// The message a step sends, per channel. Every field is a template: "{name}", "{a.b}" and
/// "{name|default}" are filled from the notification's data; a variable with neither a value nor
/// a default ends the step (never a blank in a sent message). Empty fields are not sent.
struct Content {
  std::string text;     ///< SMS and chat text, the push body, the email's text/plain part
  std::string subject;  ///< email
  std::string html;     ///< email: the text/html part (multipart/alternative with `text`)
  std::string title;    ///< push
  std::string image;    ///< push: an image URL
  std::string data_json;  ///< push: a JSON object of string templates sent as the data payload ("" = none)
  bool operator==(const Content&) const = default;
};

/// When a step starts, relative to the step before it.
enum class StepStart : std::uint8_t {
  fallback,       ///< when the previous steps failed, or did not succeed within `after_ms`
  with_previous,  ///< together with the previous step (a parallel group)
};

/// What makes a step succeed. A success ends the plan: the steps not started are cancelled.
enum class StepSuccess : std::uint8_t {
  accepted,   ///< a provider accepted the message
  delivered,  ///< a delivery receipt (or an open, which implies it)
  read,       ///< an open receipt, or Engine::acknowledge from the application
};
[[nodiscard]] std::string_view to_string(StepSuccess s) noexcept;

/// One step of a plan: a channel, providers in failover order, the content, and when it starts.
struct PlanStep {
  std::string channel;
  std::vector<std::string> providers;  ///< failover order: the next is tried when one fails for good
  std::string template_text;           ///< the text (Content::text); kept by this name for the adapters
  Content content;                     ///< the other fields (content.text is unused: see template_text)
  bool batch = false;                  ///< a provider that batches (SendGrid) may carry many of these in one request
  StepStart start = StepStart::fallback;
  std::int64_t after_ms = 0;           ///< fallback: start this long after the previous group started
                                       ///< if none of it succeeded by then (0 = only once it failed)
  StepSuccess success = StepSuccess::accepted;
};

/// The channels herald knows. An unknown channel in a plan is an error.
[[nodiscard]] bool known_channel(std::string_view channel) noexcept;

/// A rule's plan: one or more steps. Steps run in groups: a step that starts with_previous joins
/// the group of the step before it; each later group is a fallback for the one before.
struct Plan {
  std::vector<PlanStep> steps;
  [[nodiscard]] static Plan one(PlanStep s) {
    Plan p;
    p.steps.push_back(std::move(s));
    return p;
  }
  [[nodiscard]] bool cascade() const noexcept { return steps.size() > 1; }
};

/// A plan's step as a delivery holds it: shared with the plan it came from, never copied. A
/// rule's answers are mostly the same few plans, each converted once (the bindings' `converted`):
/// a copy per delivery cost two allocations and ~300 bytes of every queued delivery.
using StepRef = std::shared_ptr<const PlanStep>;

/// The step a delivery holds before it is routed: empty, and owned by no one (no count to keep).
[[nodiscard]] const StepRef& unrouted_step() noexcept;

/// Step `k` of `plan`, keeping the plan alive.
[[nodiscard]] inline StepRef step_of(const std::shared_ptr<const Plan>& plan, std::size_t k) {
  return StepRef(plan, &plan->steps[k]);
}

/// A step of its own, as a copy or a new one.
[[nodiscard]] inline StepRef own_step(PlanStep s) { return std::make_shared<const PlanStep>(std::move(s)); }

/// A rule's answer for one notification: a plan (ok), or no plan and why (the notification is
/// dead-lettered with that text), or the rule's decision to skip it or to be asked again later.
struct RouteResult {
  enum class Kind : std::uint8_t {
    error,  ///< no plan: dead-lettered with `error`
    skip,   ///< the rule decided not to send: finished as skipped, with `error` as the reason
    defer,  ///< ask the rule again at `defer_until_ms`
  };
  bool ok = false;  ///< a plan: deliver by it (kind is then not read)
  std::shared_ptr<const Plan> plan;  ///< shared: the same answer is handed to many notifications
  std::string error;  ///< error: why there is no plan; skip: the rule's reason
  Kind kind = Kind::error;
  std::int64_t defer_until_ms = 0;  ///< defer: when; a negative value is a delay from now

  [[nodiscard]] static RouteResult of(Plan p) { return of(std::make_shared<const Plan>(std::move(p))); }
  [[nodiscard]] static RouteResult of(std::shared_ptr<const Plan> p) { return RouteResult{true, std::move(p), {}}; }
  [[nodiscard]] static RouteResult failure(std::string why) { return RouteResult{false, {}, std::move(why)}; }
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
