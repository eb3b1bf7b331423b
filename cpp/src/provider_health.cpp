// Providers' health on the loop: each provider's circuit breaker is fed the answers, an open
// circuit sends the notifications queued for it on to the next provider of their chains, every
// change of state is an event of notification 0, and the rules read a view of it all while they
// route; and the attempts per minute of the last hour, for the dashboard. Everything here runs on
// the loop thread.
#include <algorithm>

#include "engine_impl.hpp"

namespace herald {

namespace {

EventKind event_kind_of(CircuitState to) {
  switch (to) {
    case CircuitState::open: return EventKind::circuit_opened;
    case CircuitState::half_open: return EventKind::circuit_half_open;
    case CircuitState::closed: break;
  }
  return EventKind::circuit_closed;
}

}  // namespace

void Engine::Impl::circuit_moved(ProviderSlot& p, const CircuitTransition& t, std::int64_t now) {
  Event e;
  e.kind = event_kind_of(t.to);
  e.provider = p.config.name;
  e.detail = t.reason;
  e.ts_us = clock->now_us();
  pending_writes.events.push_back(std::move(e));
  log(t.to == CircuitState::closed ? LogLevel::info : LogLevel::warning,
      "provider circuit " + std::string(to_string(t.to)),
      {{"provider", p.config.name}, {"from", std::string(to_string(t.from))}, {"reason", t.reason}});
  // Open: look again when the cool-down ends, so that it goes half-open on time even when no
  // other work wakes the loop.
  if (t.to == CircuitState::open) rate_timer.arm_at(p.breaker.half_open_at());
  (void)now;
}

bool Engine::Impl::circuit_lets_through(ProviderSlot& p, std::int64_t now) {
  if (auto t = p.breaker.tick(now)) circuit_moved(p, *t, now);
  if (p.breaker.state() != CircuitState::open) return true;
  if (!p.has_waiting()) return false;
  bool moved_on = false;
  std::vector<std::int64_t> half_open_at;
  while (p.has_waiting()) {
    const Id id = p.pop_waiting();
    auto it = active.find(id);
    if (it == active.end()) continue;  // cancelled while waiting
    Delivery& x = it->second;
    half_open_at.clear();
    for (const auto& name : x.plan->providers) half_open_at.push_back(providers.at(name).breaker.half_open_at());
    Step s = machine.provider_unavailable(x, half_open_at, now);
    moved_on = moved_on || s.next == Next::queue;
    apply(x, s, true, pending_writes);
  }
  // A provider this dispatch has already passed may have been given work.
  if (moved_on) post_pump();
  return false;
}

void Engine::Impl::record_outcome(ProviderSlot& p, bool provider_worked, const http::Response& resp,
                                  std::int64_t now) {
  // A request that never left (the store could not record the attempt) says nothing of the provider.
  if (resp.status == 0 && resp.latency.count() == 0) return;
  if (resp.latency.count() > 0) p.latency.add(resp.latency.count());
  if (auto t = p.breaker.record(provider_worked, now)) circuit_moved(p, *t, now);
}

ProviderHealth health_of(const ProviderSlot& p, std::int64_t now) {
  ProviderHealth h;
  h.name = p.config.name;
  h.circuit = p.breaker.state();
  h.failure_rate = p.breaker.failure_rate(now);
  h.attempts = p.breaker.attempts(now);
  h.p99_ms = p.latency.p99_ms();
  h.cost = p.config.cost_per_message;
  h.half_open_at_ms = p.breaker.half_open_at();
  return h;
}

/// What the rules read during one routing call: the loop's own state, read on the loop thread.
class LoopHealth final : public ProviderHealthSource {
 public:
  LoopHealth(const std::unordered_map<std::string, ProviderSlot>& providers, std::int64_t now)
      : providers_(providers), now_(now) {}
  [[nodiscard]] std::optional<ProviderHealth> health(std::string_view name) const override {
    auto it = providers_.find(std::string(name));
    if (it == providers_.end()) return std::nullopt;
    return health_of(it->second, now_);
  }
  [[nodiscard]] std::vector<std::string> names() const override {
    std::vector<std::string> out;
    out.reserve(providers_.size());
    for (const auto& [name, p] : providers_) out.push_back(name);
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  const std::unordered_map<std::string, ProviderSlot>& providers_;
  std::int64_t now_;
};

std::vector<RouteResult> Engine::Impl::route_rules(const std::vector<const Notification*>& batch) {
  return router->route_with_health(batch, LoopHealth(providers, clock->now_ms()));
}

std::vector<ProviderHealth> Engine::provider_health() {
  auto pass = impl_->gate.enter();
  return impl_->on_loop([i = impl_.get()] {
    const std::int64_t now = i->clock->now_ms();
    std::vector<ProviderHealth> out;
    for (auto& [name, p] : i->providers) {
      if (auto t = p.breaker.tick(now)) {
        i->circuit_moved(p, *t, now);
        i->post_pump();  // its queue may go on now
      }
      out.push_back(health_of(p, now));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    return out;
  });
}

LastHour Engine::attempts_last_hour() {
  auto pass = impl_->gate.enter();
  return impl_->on_loop([i = impl_.get()] {
    LastHour h = i->metrics.last_hour(i->clock->now_ms());
    // A provider with no answer yet is listed too, with zeros.
    for (const auto& [name, p] : i->providers) {
      const bool listed = std::any_of(h.providers.begin(), h.providers.end(), [&](const auto& x) { return x.first == name; });
      if (!listed) h.providers.emplace_back(name, LastHour::Series{});
    }
    std::sort(h.providers.begin(), h.providers.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    return h;
  });
}

}  // namespace herald
