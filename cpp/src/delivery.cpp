#include "herald/delivery.hpp"

#include <array>
#include <stdexcept>

#include "herald/receipts.hpp"

namespace herald {

namespace {

void expect(const Delivery& x, Phase phase, const char* transition) {
  if (x.phase != phase) {
    throw std::logic_error(std::string("delivery ") + transition + ": notification " + std::to_string(x.n.id) +
                           " is " + std::string(to_string(x.phase)) + ", not " + std::string(to_string(phase)));
  }
}

Event event_of(const Delivery& x, EventKind kind) {
  Event e = make_event(x.n, x.d.attempt, kind);
  e.channel = x.plan.channel;
  return e;
}

/// The answer's facts on an event about it.
Event answer_event(const Delivery& x, EventKind kind, const ProviderFacts& p, const AnswerFacts& facts) {
  Event e = event_of(x, kind);
  e.provider = p.name;
  e.latency_us = facts.latency_us;
  e.http_status = facts.http_status;
  return e;
}

/// Records a final state: the last event of the notification.
void finish(Delivery& x, Step& s, State state, EventKind kind, std::string detail) {
  x.d.state = state;
  if (state != State::completed) x.d.last_error = detail;
  Event e = event_of(x, kind);
  e.provider = x.d.provider;
  e.detail = std::move(detail);
  switch (state) {
    case State::expired: e.error_class = ErrorClass::expired; break;
    case State::cancelled: e.error_class = ErrorClass::cancelled; break;
    case State::suppressed:
      e.error_class = x.failure == ErrorClass::opted_out ? ErrorClass::opted_out : ErrorClass::suppressed;
      break;
    case State::dead_lettered: e.error_class = x.failure == ErrorClass::none ? ErrorClass::no_provider : x.failure; break;
    default: break;
  }
  s.events.push_back(std::move(e));
  s.save = true;
  s.next = Next::finish;
  x.phase = Phase::finished;
}

void expire(Delivery& x, Step& s) { finish(x, s, State::expired, EventKind::expired, "expires_at passed before it could be sent"); }

void dead_letter(Delivery& x, Step& s, std::string reason) {
  finish(x, s, State::dead_lettered, EventKind::dead_lettered, std::move(reason));
}

bool expired(const Delivery& x, std::int64_t now) { return x.n.expires_at_ms != 0 && now >= x.n.expires_at_ms; }

void queue(Delivery& x, Step& s) {
  x.phase = Phase::waiting_for_slot;
  s.next = Next::queue;
}

/// The next provider of the chain, or the dead-letter set when none is left.
void fail_over(Delivery& x, Step& s, const std::string& error) {
  x.d.last_error = error;
  const auto next = static_cast<std::size_t>(x.d.provider_index) + 1;
  if (next >= x.plan.providers.size()) {
    dead_letter(x, s, "every provider failed; last error: " + error);
    return;
  }
  Event e = event_of(x, EventKind::failed_over);
  e.provider = x.plan.providers[next];
  e.detail = "from " + x.d.provider + ": " + error;
  x.d.provider_index = static_cast<int>(next);
  x.d.provider_attempt = 0;
  x.d.state = State::routed;
  s.events.push_back(std::move(e));
  s.save = true;
  queue(x, s);
}

/// The attempt in doubt is known to have reached `p`: completed without a resend, counted and
/// charged like an accepted attempt. `reconciled` says how it became known.
void complete_in_doubt(Delivery& x, Step& s, const ProviderFacts& p, Event reconciled, std::int64_t now) {
  x.d.cost += p.cost_per_message;
  if (p.has_receipts) x.d.accepted_at_ms = now;
  reconciled.kind = EventKind::reconciled;
  reconciled.provider = p.name;
  s.events.push_back(std::move(reconciled));
  finish(x, s, State::completed, EventKind::completed, x.d.provider_message_id);
}

}  // namespace

std::string_view to_string(Phase p) noexcept {
  static constexpr std::array<std::string_view, 6> names = {"scheduled",  "taken",     "waiting_for_slot",
                                                            "looking_up", "in_flight", "finished"};
  const auto i = static_cast<std::size_t>(p);
  return i < names.size() ? names[i] : "unknown";
}

std::string_view to_string(Next n) noexcept {
  static constexpr std::array<std::string_view, 9> names = {"nothing", "refuse",     "route",    "queue", "look_up",
                                                            "send",    "send_batch", "schedule", "finish"};
  const auto i = static_cast<std::size_t>(n);
  return i < names.size() ? names[i] : "unknown";
}

DeliveryMachine::DeliveryMachine(RetryPolicy retry, std::uint64_t seed) : retry_(retry), rng_(seed) {}

Step DeliveryMachine::recovered(Delivery& x, std::int64_t updated_at_ms) const {
  expect(x, Phase::scheduled, "recovered");
  Step s;
  s.next = Next::schedule;
  s.at_ms = x.n.send_at_ms;
  if (x.d.state == State::retry_scheduled) s.at_ms = std::max(s.at_ms, x.d.next_at_ms);
  if (x.d.state != State::sending) return s;
  // The attempt went out (or was about to) and its answer was never recorded.
  x.d.in_doubt = true;
  x.doubt = Doubt::unasked;
  x.attempt_started_ms = updated_at_ms;
  Event e = event_of(x, EventKind::in_doubt);
  e.provider = x.d.provider;
  e.detail = "outcome of attempt " + std::to_string(x.d.attempt) +
             " unknown after a restart; asking the provider where it can answer, else resending once";
  s.events.push_back(std::move(e));
  x.d.state = State::queued;
  s.save = true;
  return s;
}

Step DeliveryMachine::retried(Delivery& x) const {
  expect(x, Phase::scheduled, "retried");
  x.d.state = State::queued;
  x.d.provider_index = 0;
  x.d.provider_attempt = 0;
  x.d.next_at_ms = 0;
  x.d.last_error.clear();
  Step s;
  Event e = event_of(x, EventKind::retried);
  e.detail = "re-queued from the dead-letter set";
  s.events.push_back(std::move(e));
  s.save = true;
  s.next = Next::schedule;
  return s;
}

Step DeliveryMachine::take(Delivery& x, std::int64_t now) const {
  expect(x, Phase::scheduled, "take");
  x.phase = Phase::taken;
  Step s;
  if (expired(x, now)) {
    expire(x, s);
  } else if (!x.routed) {
    s.next = Next::route;
  } else {
    queue(x, s);
  }
  return s;
}

Step DeliveryMachine::routed(Delivery& x, RouteResult r) const {
  expect(x, Phase::taken, "routed");
  Step s;
  if (!r.ok) {
    x.failure = ErrorClass::routing_error;
    dead_letter(x, s, std::move(r.error));
    return s;
  }
  x.plan = std::move(r.plan);
  x.routed = true;
  if (x.d.provider_index >= static_cast<int>(x.plan.providers.size())) {
    x.d.provider_index = 0;  // the rules changed since a restart: start the chain again
    x.d.provider_attempt = 0;
  }
  Event e = event_of(x, EventKind::routed);
  e.detail = x.plan.channel + " via ";
  for (std::size_t k = 0; k < x.plan.providers.size(); ++k) e.detail += (k ? "," : "") + x.plan.providers[k];
  s.events.push_back(std::move(e));
  queue(x, s);
  return s;
}

Step DeliveryMachine::at_head(Delivery& x, const Suppression* why, std::int64_t now) const {
  expect(x, Phase::waiting_for_slot, "at_head");
  Step s;
  if (expired(x, now)) {
    expire(x, s);
  } else if (why != nullptr) {
    finish(x, s, State::suppressed, EventKind::suppressed,
           (why->reason == SuppressionReason::opted_out ? "recipient opted out of " : "address unusable on ") + why->channel + " (" +
               why->detail + ", notification " + std::to_string(why->notification_id) + ")");
  }
  return s;
}

Step DeliveryMachine::start(Delivery& x, const ProviderFacts& p) const {
  expect(x, Phase::waiting_for_slot, "start");
  Step s;
  if (x.doubt == Doubt::unasked) {
    if (p.has_lookup && p.name == x.d.provider) {
      s.next = Next::look_up;
      return s;
    }
    x.doubt = Doubt::resend;  // nobody to ask: resend, flagged
  }
  s.next = x.plan.batch && !x.alone && p.batches && x.doubt == Doubt::none ? Next::send_batch : Next::send;
  return s;
}

bool DeliveryMachine::can_join(const Delivery& first, const Delivery& other) {
  return other.phase == Phase::waiting_for_slot && other.plan.batch && !other.alone && other.doubt == Doubt::none &&
         other.plan.channel == first.plan.channel && other.plan.template_text == first.plan.template_text;
}

Step DeliveryMachine::cannot_look_up(Delivery& x) const {
  expect(x, Phase::waiting_for_slot, "cannot_look_up");
  Step s;
  x.doubt = Doubt::resend;
  s.next = Next::send;
  return s;
}

Step DeliveryMachine::lookup_started(Delivery& x, const ProviderFacts& p) const {
  expect(x, Phase::waiting_for_slot, "lookup_started");
  x.phase = Phase::looking_up;
  Step s;
  Event e = event_of(x, EventKind::lookup);
  e.provider = p.name;
  e.detail = "asking whether the attempt in doubt arrived, before any resend";
  s.events.push_back(std::move(e));
  return s;
}

Step DeliveryMachine::sending(Delivery& x, const ProviderFacts& p, std::string address, std::string detail) const {
  expect(x, Phase::waiting_for_slot, "sending");
  ++x.d.attempt;
  ++x.d.provider_attempt;
  x.d.state = State::sending;
  x.d.provider = p.name;
  x.d.provider_message_id.clear();
  x.d.channel = x.plan.channel;
  x.d.address = std::move(address);
  if (x.doubt != Doubt::none) {
    detail = detail.empty() ? "resend of an attempt in doubt" : detail + "; resend of an attempt in doubt";
  }
  x.doubt = Doubt::none;
  x.phase = Phase::in_flight;
  Step s;
  Event e = event_of(x, EventKind::sending);
  e.provider = p.name;
  e.detail = std::move(detail);
  s.events.push_back(std::move(e));
  s.save = true;
  return s;
}

Step DeliveryMachine::build_failed(Delivery& x, const ProviderFacts& p, const std::string& error) const {
  expect(x, Phase::waiting_for_slot, "build_failed");
  x.failure = ErrorClass::template_error;
  Step s;
  dead_letter(x, s, p.name + " could not build the request: " + error);
  return s;
}

Step DeliveryMachine::answered(Delivery& x, const ProviderFacts& p, const Outcome& out, const AnswerFacts& facts,
                               std::int64_t now) {
  expect(x, Phase::in_flight, "answered");
  Step s;
  auto failed_attempt = [&] {
    x.failure = facts.error_class;
    Event e = answer_event(x, EventKind::attempt_failed, p, facts);
    e.error_class = x.failure;
    e.detail = out.error;
    s.events.push_back(std::move(e));
  };
  auto suppress_address = [&](SuppressionReason reason) {
    if (x.d.address.empty()) x.d.address = facts.address;
    if (x.d.address.empty()) return;
    s.suppress = SuppressionRequest{x.d.channel, x.d.address, reason, out.error, p.name};
  };
  switch (out.kind) {
    case OutcomeKind::accepted: {
      x.d.provider_message_id = out.provider_message_id;
      x.d.cost += p.cost_per_message;
      if (p.has_receipts) x.d.accepted_at_ms = now;
      Event e = answer_event(x, EventKind::accepted, p, facts);
      e.detail = out.provider_message_id;
      e.cost = p.cost_per_message;
      s.events.push_back(std::move(e));
      finish(x, s, State::completed, EventKind::completed, out.provider_message_id);
      break;
    }
    case OutcomeKind::retryable: {
      failed_attempt();
      if (x.d.provider_attempt >= p.max_attempts) {
        fail_over(x, s, out.error);
        break;
      }
      const std::int64_t delay = backoff_ms(retry_, x.d.provider_attempt, out.retry_after_ms, rng_);
      const std::int64_t at = now + delay;
      x.d.last_error = out.error;
      if (x.n.expires_at_ms != 0 && at >= x.n.expires_at_ms) {
        expire(x, s);
        break;
      }
      x.d.state = State::retry_scheduled;
      x.d.next_at_ms = at;
      Event e = event_of(x, EventKind::retry_scheduled);
      e.provider = p.name;
      e.detail = "in " + std::to_string(delay) + " ms" +
                 (out.retry_after_ms >= 0 ? " (Retry-After " + std::to_string(out.retry_after_ms) + " ms)" : "");
      s.events.push_back(std::move(e));
      s.save = true;
      s.next = Next::schedule;
      s.at_ms = at;
      x.phase = Phase::scheduled;
      break;
    }
    case OutcomeKind::permanent:
      failed_attempt();
      fail_over(x, s, out.error);
      break;
    case OutcomeKind::recipient_invalid:
      failed_attempt();
      // An invalid number or an unregistered token will not get better: never try it again.
      suppress_address(SuppressionReason::unusable);
      dead_letter(x, s, "recipient invalid: " + out.error);
      break;
    case OutcomeKind::recipient_opted_out:
      failed_attempt();
      suppress_address(SuppressionReason::opted_out);
      finish(x, s, State::suppressed, EventKind::opted_out, "recipient opted out: " + out.error);
      break;
  }
  return s;
}

Step DeliveryMachine::batch_refused(Delivery& x, const ProviderFacts& p, const Outcome& out, const AnswerFacts& facts) const {
  expect(x, Phase::in_flight, "batch_refused");
  x.alone = true;
  --x.d.provider_attempt;
  Step s;
  Event e = event_of(x, EventKind::attempt_failed);
  e.provider = p.name;
  e.http_status = facts.http_status;
  e.detail = "the batch was refused (" + out.error + "); sending alone";
  s.events.push_back(std::move(e));
  queue(x, s);
  return s;
}

Step DeliveryMachine::looked_up(Delivery& x, const ProviderFacts& p, const LookupResult& found,
                                const AnswerFacts& facts, std::int64_t now) const {
  expect(x, Phase::looking_up, "looked_up");
  Step s;
  Event e = answer_event(x, EventKind::lookup, p, facts);
  switch (found.found) {
    case LookupResult::Found::yes: {
      e.detail = "the attempt in doubt reached " + p.name + " as " + found.provider_message_id + "; not resent";
      x.d.provider_message_id = found.provider_message_id;
      const Receipt& r = found.receipt;
      const ReceiptAction act = decide_receipt(r.status, ReceiptState::none);
      if (!act.ignore) {
        s.receipt = act.receipt;
        if (act.suppress && !x.d.address.empty()) {
          s.suppress = SuppressionRequest{x.d.channel, x.d.address, *act.suppress,
                                          r.provider_status + " " + r.error_code, p.name};
        }
      }
      complete_in_doubt(x, s, p, std::move(e), now);
      break;
    }
    case LookupResult::Found::no:
      e.detail = "the attempt in doubt never reached " + p.name + "; sending it";
      s.events.push_back(std::move(e));
      x.doubt = Doubt::resend;
      queue(x, s);
      break;
    case LookupResult::Found::unknown:
      ++x.lookups_failed;
      e.detail = "status query failed: " + (found.error.empty() ? std::string("no answer") : found.error);
      s.events.push_back(std::move(e));
      if (x.lookups_failed >= 3) {
        x.doubt = Doubt::resend;  // the provider cannot say: resend, flagged in doubt
        queue(x, s);
      } else {
        x.phase = Phase::scheduled;
        s.next = Next::schedule;
        s.at_ms = now + 500LL * x.lookups_failed;
      }
      break;
  }
  return s;
}

Step DeliveryMachine::receipt_in_doubt(Delivery& x, const ProviderFacts& p, const Receipt& r, std::int64_t now) const {
  Step s;
  if (x.doubt == Doubt::none || x.awaiting_answer() || x.phase == Phase::finished || x.d.provider != p.name) return s;
  if (!r.provider_message_id.empty()) x.d.provider_message_id = r.provider_message_id;
  Event e = event_of(x, EventKind::reconciled);
  e.detail = "a receipt shows the attempt in doubt reached " + p.name + "; not resent";
  complete_in_doubt(x, s, p, std::move(e), now);
  return s;
}

Step DeliveryMachine::cancel(Delivery& x) const {
  Step s;
  if (x.awaiting_answer() || x.phase == Phase::finished) {
    s.next = Next::refuse;
    return s;
  }
  finish(x, s, State::cancelled, EventKind::cancelled, "cancelled by the caller");
  return s;
}

// The circuit breaker's move (circuit_breaker.hpp): no attempt was made, none is counted.
Step DeliveryMachine::provider_unavailable(Delivery& x, const std::vector<std::int64_t>& half_open_at,
                                           std::int64_t now) const {
  expect(x, Phase::waiting_for_slot, "provider_unavailable");
  Step s;
  const auto from = static_cast<std::size_t>(x.d.provider_index);
  const std::string& open = x.plan.providers.at(from);
  std::size_t soonest = from;
  for (std::size_t k = from + 1; k < x.plan.providers.size() && k < half_open_at.size(); ++k) {
    if (half_open_at[k] == 0) {
      Event e = event_of(x, EventKind::failed_over);
      e.provider = x.plan.providers[k];
      e.detail = "from " + open + ": circuit open";
      x.d.provider_index = static_cast<int>(k);
      x.d.provider_attempt = 0;
      x.d.state = State::routed;
      s.events.push_back(std::move(e));
      s.save = true;
      queue(x, s);
      return s;
    }
    if (half_open_at[k] < half_open_at[soonest]) soonest = k;
  }
  // Every provider from here is open: wait for the first to let a probe through.
  const std::int64_t at = std::max(now, from < half_open_at.size() ? half_open_at[soonest] : now);
  if (x.n.expires_at_ms != 0 && at >= x.n.expires_at_ms) {
    expire(x, s);
    return s;
  }
  if (soonest != from) {
    x.d.provider_index = static_cast<int>(soonest);
    x.d.provider_attempt = 0;
  }
  x.d.state = State::retry_scheduled;
  x.d.next_at_ms = at;
  Event e = event_of(x, EventKind::retry_scheduled);
  e.provider = x.plan.providers[soonest];
  e.detail = "in " + std::to_string(at - now) + " ms: every provider of the plan from " + open +
             " on has its circuit open; waiting for " + e.provider + " to let a probe through";
  s.events.push_back(std::move(e));
  s.save = true;
  s.next = Next::schedule;
  s.at_ms = at;
  x.phase = Phase::scheduled;
  return s;
}

}  // namespace herald
