#include "herald/metrics.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace herald {

namespace {

constexpr std::array<State, 5> final_states = {State::completed, State::expired, State::dead_lettered, State::cancelled,
                                               State::suppressed};
constexpr std::array<OutcomeKind, 5> outcome_kinds = {OutcomeKind::accepted, OutcomeKind::retryable,
                                                      OutcomeKind::permanent, OutcomeKind::recipient_invalid,
                                                      OutcomeKind::recipient_opted_out};

/// A number as the text format writes it: integers without a fraction, others shortest round trip.
std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Shorter when it round-trips: 0.005 rather than 0.0050000000000000001.
  for (int precision = 1; precision < 17; ++precision) {
    char shorter[32];
    std::snprintf(shorter, sizeof shorter, "%.*g", precision, v);
    if (std::strtod(shorter, nullptr) == v) return shorter;
  }
  return buf;
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value) {
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(std::to_string(value)).append("\n");
}

void scalar(std::string& out, std::string_view name, std::string_view type, std::string_view help, std::uint64_t value) {
  header(out, name, type, help);
  sample(out, name, {}, value);
}

std::string label(std::string_view key, std::string_view value) {
  return std::string(key) + "=\"" + prometheus_label(value) + "\"";
}

}  // namespace

std::string prometheus_label(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void Histogram::observe(std::chrono::microseconds latency) noexcept {
  const double s = static_cast<double>(latency.count()) / 1e6;
  const auto it = std::lower_bound(bounds_->begin(), bounds_->end(), s);  // le: the first bound >= s
  ++counts_[static_cast<std::size_t>(it - bounds_->begin())];
  ++count_;
  sum_us_ += latency.count();
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  const std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
  const std::string bucket = std::string(name) + "_bucket";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds_->size(); ++i) {
    cumulative += counts_[i];
    sample(out, bucket, prefix + "le=\"" + number((*bounds_)[i]) + "\"", cumulative);
  }
  sample(out, bucket, prefix + "le=\"+Inf\"", count_);
  out.append(name).append("_sum");
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(number(static_cast<double>(sum_us_) / 1e6)).append("\n");
  sample(out, std::string(name) + "_count", labels, count_);
}

void MinuteRing::add(std::int64_t minute, bool accepted) noexcept {
  const auto n = static_cast<std::int64_t>(LastHour::minutes);
  Slot& s = slots_[static_cast<std::size_t>(((minute % n) + n) % n)];
  if (s.minute > minute) return;
  if (s.minute != minute) s = Slot{minute, {}};
  ++(accepted ? s.counts.accepted : s.counts.failed);
}

LastHour::Series MinuteRing::window(std::int64_t current) const noexcept {
  LastHour::Series out{};
  const auto n = static_cast<std::int64_t>(LastHour::minutes);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t minute = current - (n - 1) + i;
    const Slot& s = slots_[static_cast<std::size_t>(((minute % n) + n) % n)];
    if (s.minute == minute) out[static_cast<std::size_t>(i)] = s.counts;
  }
  return out;
}

Metrics::Metrics(std::shared_ptr<const Clock> clock)
    : clock_(std::move(clock)),
      request_bounds_{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
      // Enqueue to accepted includes time in the queue: a bulk backlog or a retry's backoff.
      accept_bounds_{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600} {
  accept_latency_.reserve(priority_count);
  for (int p = 0; p < priority_count; ++p) accept_latency_.emplace_back(&accept_bounds_);
}

void Metrics::final_state(const std::string& type, Priority priority, State state) {
  auto it = types_.find(type);
  if (it == types_.end()) it = types_.emplace(type, ByType{}).first;
  const auto s = static_cast<std::size_t>(state);
  if (s < 9) ++it->second.final[static_cast<std::size_t>(priority)][s];
}

Metrics::ByProvider& Metrics::provider(const std::string& name) {
  auto it = providers_.find(name);
  if (it == providers_.end()) it = providers_.emplace(name, ByProvider(&request_bounds_)).first;
  return it->second;
}

void Metrics::attempt(const std::string& provider_name, OutcomeKind outcome, const std::string& channel, double cost) {
  const auto k = static_cast<std::size_t>(outcome);
  ByProvider& p = provider(provider_name);
  if (k < outcome_kinds.size()) ++p.outcomes[k];
  const std::int64_t minute = (clock_ ? clock_->now_ms() : herald::now_ms()) / 60'000;
  p.recent.add(minute, outcome == OutcomeKind::accepted);
  recent_.add(minute, outcome == OutcomeKind::accepted);
  if (!channel.empty() && k < outcome_kinds.size()) ++channels_[channel][k];
  if (outcome == OutcomeKind::accepted && cost > 0) spend_[provider_name] += cost;
}

void Metrics::alert(const std::string& name, bool firing) { alerts_[name] = firing; }

LastHour Metrics::last_hour(std::int64_t now_ms) const {
  const std::int64_t current = now_ms / 60'000;
  LastHour h;
  h.start_ms = (current - static_cast<std::int64_t>(LastHour::minutes) + 1) * 60'000;
  h.total = recent_.window(current);
  h.providers.reserve(providers_.size());
  for (const auto& [name, p] : providers_) h.providers.emplace_back(name, p.recent.window(current));
  std::sort(h.providers.begin(), h.providers.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return h;
}

void Metrics::request(const std::string& provider_name, std::chrono::microseconds latency) {
  provider(provider_name).latency.observe(latency);
}

void Metrics::accepted(Priority priority, std::chrono::microseconds since_enqueue) {
  accept_latency_[static_cast<std::size_t>(priority)].observe(std::max(since_enqueue, std::chrono::microseconds{0}));
}

void Metrics::suppression(const std::string& channel, const std::string& reason) {
  ++suppressions_[channel + '\n' + reason];
}

std::string Metrics::render(const EngineStats& c, const MetricsGauges& g) const {
  std::string out;
  out.reserve(8192);
  scalar(out, "herald_notifications_received_total", "counter", "Notifications accepted by send() since the start.",
         c.received);
  scalar(out, "herald_notifications_deduplicated_total", "counter",
         "Sends answered with an existing notification (same idempotency key).", c.deduplicated);

  header(out, "herald_notifications_final_total", "counter", "Notifications that reached a final state.");
  std::vector<const std::pair<const std::string, ByType>*> types;
  for (const auto& t : types_) types.push_back(&t);
  std::sort(types.begin(), types.end(), [](auto* a, auto* b) { return a->first < b->first; });
  for (const auto* t : types) {
    for (int p = 0; p < priority_count; ++p) {
      for (State s : final_states) {
        const std::uint64_t n = t->second.final[static_cast<std::size_t>(p)][static_cast<std::size_t>(s)];
        if (n == 0) continue;
        sample(out, "herald_notifications_final_total",
               label("type", t->first) + "," + label("priority", to_string(static_cast<Priority>(p))) + "," +
                   label("state", to_string(s)),
               n);
      }
    }
  }

  std::vector<const std::pair<const std::string, ByProvider>*> providers;
  for (const auto& p : providers_) providers.push_back(&p);
  std::sort(providers.begin(), providers.end(), [](auto* a, auto* b) { return a->first < b->first; });
  header(out, "herald_attempts_total", "counter", "Provider answers about one notification's attempt, by outcome.");
  for (const auto* p : providers) {
    for (OutcomeKind k : outcome_kinds) {
      const std::uint64_t n = p->second.outcomes[static_cast<std::size_t>(k)];
      if (n != 0) sample(out, "herald_attempts_total", label("provider", p->first) + "," + label("outcome", to_string(k)), n);
    }
  }
  header(out, "herald_channel_attempts_total", "counter",
         "Provider answers about one notification's attempt, by the plan's channel and outcome.");
  std::vector<std::pair<std::string, std::array<std::uint64_t, 5>>> channels(channels_.begin(), channels_.end());
  std::sort(channels.begin(), channels.end());
  for (const auto& [channel, counts] : channels) {
    for (OutcomeKind k : outcome_kinds) {
      const std::uint64_t n = counts[static_cast<std::size_t>(k)];
      if (n != 0) sample(out, "herald_channel_attempts_total", label("channel", channel) + "," + label("outcome", to_string(k)), n);
    }
  }
  header(out, "herald_spend_total", "counter",
         "Cost of accepted attempts by provider (cost_per_message from its configuration), in its currency.");
  std::vector<std::pair<std::string, double>> spend(spend_.begin(), spend_.end());
  std::sort(spend.begin(), spend.end());
  for (const auto& [name, total] : spend) {
    out.append("herald_spend_total{").append(label("provider", name)).append("} ").append(number(total)).append("\n");
  }
  header(out, "herald_provider_request_seconds", "histogram", "HTTP requests to providers, until the answer.");
  for (const auto* p : providers) {
    if (p->second.latency.count() != 0) p->second.latency.render(out, "herald_provider_request_seconds", label("provider", p->first));
  }
  header(out, "herald_accept_latency_seconds", "histogram",
         "From acceptance by send() to acceptance by a provider, queueing and retries included.");
  for (int p = 0; p < priority_count; ++p) {
    accept_latency_[static_cast<std::size_t>(p)].render(out, "herald_accept_latency_seconds",
                                                        label("priority", to_string(static_cast<Priority>(p))));
  }

  header(out, "herald_queue_depth", "gauge", "Notifications due and waiting: in the lane, or routed and waiting for a provider slot.");
  for (int p = 0; p < priority_count; ++p) {
    const auto i = static_cast<std::size_t>(p);
    const std::string lane = label("lane", to_string(static_cast<Priority>(p)));
    sample(out, "herald_queue_depth", lane + ",where=\"lane\"", g.ready[i]);
    sample(out, "herald_queue_depth", lane + ",where=\"provider\"", g.waiting[i]);
  }
  scalar(out, "herald_scheduled", "gauge", "Notifications waiting for a later time (send_at or a retry's backoff).",
         g.scheduled);
  scalar(out, "herald_active", "gauge", "Notifications accepted and not yet final.", c.active);
  scalar(out, "herald_in_flight", "gauge", "Attempts awaiting a provider's answer.", c.in_flight);
  header(out, "herald_provider_in_flight", "gauge", "Requests in flight per provider (a batch counts once).");
  for (const auto& [name, n] : g.provider_in_flight) sample(out, "herald_provider_in_flight", label("provider", name), n);
  header(out, "herald_provider_circuit", "gauge",
         "Each provider's circuit breaker: 1 for the state it is in (closed, open, half_open), 0 for the others.");
  for (const auto& [name, state] : g.provider_circuit) {
    for (auto st : {CircuitState::closed, CircuitState::open, CircuitState::half_open}) {
      sample(out, "herald_provider_circuit", label("provider", name) + "," + label("state", std::string(to_string(st))),
             state == st ? std::uint64_t{1} : std::uint64_t{0});
    }
  }

  scalar(out, "herald_retries_total", "counter", "Retries scheduled after a retryable failure.", c.retries);
  scalar(out, "herald_failovers_total", "counter", "Moves to the next provider of a plan.", c.failovers);
  scalar(out, "herald_in_doubt_total", "counter", "Attempts whose outcome a crash lost (resent or looked up).", c.in_doubt);
  scalar(out, "herald_receipts_applied_total", "counter", "Genuine delivery receipts applied.", c.receipts);
  scalar(out, "herald_receipts_rejected_total", "counter", "Receipts refused: forged, stale or unreadable.",
         c.receipts_rejected);
  scalar(out, "herald_lookups_total", "counter", "Status queries made to providers (reconciliation).", c.lookups);
  scalar(out, "herald_reconciled_total", "counter", "Deliveries or attempts in doubt settled by a status query.",
         c.reconciled);
  scalar(out, "herald_pruned_total", "counter", "Final notifications deleted by retention.", c.pruned);

  header(out, "herald_suppressions_added_total", "counter", "Addresses put on the suppression list, by channel and reason.");
  std::vector<std::pair<std::string, std::uint64_t>> sup(suppressions_.begin(), suppressions_.end());
  std::sort(sup.begin(), sup.end());
  for (const auto& [key, n] : sup) {
    const auto cut = key.find('\n');
    sample(out, "herald_suppressions_added_total",
           label("channel", key.substr(0, cut)) + "," + label("reason", key.substr(cut + 1)), n);
  }

  scalar(out, "herald_store_degraded", "gauge", "1 while the store refuses writes (disk full) and holds them.",
         g.store_degraded ? 1 : 0);
  scalar(out, "herald_store_held_batches", "gauge", "Write batches held in memory while the store refuses writes.",
         g.store_held_batches);
  scalar(out, "herald_closing", "gauge", "1 once the engine is closing.", g.closing ? 1 : 0);

  header(out, "herald_alert_firing", "gauge", "1 while the alert rule fires, 0 otherwise (docs/alerts.md).");
  std::vector<std::pair<std::string, bool>> alerts(alerts_.begin(), alerts_.end());
  std::sort(alerts.begin(), alerts.end());
  for (const auto& [name, firing] : alerts) sample(out, "herald_alert_firing", label("alert", name), firing ? 1 : 0);
  return out;
}

}  // namespace herald
