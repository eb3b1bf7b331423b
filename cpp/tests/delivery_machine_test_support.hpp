#pragma once
// Shared by the delivery state machine's tests: a fresh notification, a plan, a provider's facts,
// a delivery waiting for or in flight on its first provider, an outcome, and a step's event kinds.
#include <cstdint>
#include <string>
#include <vector>

#include "herald/delivery.hpp"

namespace herald::delivery_test {

inline constexpr std::int64_t t0 = 1'000'000;  // "now" of these tests, in ms

inline Delivery fresh(Id id = 7) {
  Delivery x;
  x.n.id = id;
  x.n.type = "otp";
  x.n.tenant = "acme";
  x.n.recipient_id = "u1";
  x.n.created_at_ms = t0;
  return x;
}

inline RouteResult plan_of(std::vector<std::string> providers, bool batch = false) {
  PlanStep step;
  step.channel = "sms";
  step.providers = std::move(providers);
  step.template_text = "code {code}";
  step.batch = batch;
  return RouteResult::of(Plan::one(std::move(step)));
}

inline ProviderFacts provider(std::string name, int max_attempts = 3) {
  ProviderFacts p;
  p.name = std::move(name);
  p.max_attempts = max_attempts;
  p.cost_per_message = 0.01;
  return p;
}

/// A notification routed to `providers` and waiting for a slot of the first.
inline Delivery waiting(const DeliveryMachine& m, std::vector<std::string> providers, bool batch = false) {
  Delivery x = fresh();
  m.take(x, t0);
  m.routed(x, plan_of(std::move(providers), batch), t0);
  return x;
}

/// ... and in flight on it.
inline Delivery in_flight(DeliveryMachine& m, std::vector<std::string> providers) {
  Delivery x = waiting(m, std::move(providers));
  m.sending(x, provider(x.current_provider()), "+15550001", "");
  return x;
}

inline Outcome outcome(OutcomeKind kind, std::string error = {}) {
  Outcome o;
  o.kind = kind;
  o.error = std::move(error);
  if (kind == OutcomeKind::accepted) o.provider_message_id = "SM1";
  return o;
}

inline std::vector<std::string> kinds(const Step& s) {
  std::vector<std::string> out;
  for (const auto& e : s.events) out.emplace_back(to_string(e.kind));
  return out;
}

using Kinds = std::vector<std::string>;

}  // namespace herald::delivery_test
