#include "herald/delivery.hpp"

#include <array>
#include <stdexcept>

#include "delivery_detail.hpp"
#include "herald/receipts.hpp"

namespace herald {

namespace {

using namespace delivery_detail;

bool expired(const Delivery& x, std::int64_t now) { return x.n.expires_at_ms != 0 && now >= x.n.expires_at_ms; }

void queue(Delivery& x, Step& s) {
  x.phase = Phase::waiting_for_slot;
  s.next = Next::queue;
}

bool has_next_provider(const Delivery& x) {
  return static_cast<std::size_t>(x.d.provider_index) + 1 < x.plan->providers.size();
}

/// On to provider `k` of the chain (failed_over, "from <current>: <why>"), queued for it.
void move_to_provider(Delivery& x, Step& s, std::size_t k, const std::string& why) {
  Event e = event_of(x, EventKind::failed_over);
  e.provider = x.plan->providers[k];
  e.detail = "from " + x.current_provider() + ": " + why;
  x.d.provider_index = static_cast<int>(k);
  x.d.provider_attempt = 0;
  x.d.state = State::routed;
  s.events.push_back(std::move(e));
  s.save = true;
  queue(x, s);
}

/// The next provider of the chain, or the dead-letter set when none is left.
void fail_over(Delivery& x, Step& s, const std::string& error) {
  x.d.last_error = error;
  const auto next = static_cast<std::size_t>(x.d.provider_index) + 1;
  if (next >= x.plan->providers.size()) {
    dead_letter(x, s, "every provider failed; last error: " + error);
    return;
  }
  move_to_provider(x, s, next, error);
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
  static constexpr std::array<std::string_view, 7> names = {
      "scheduled", "taken", "waiting_for_slot", "looking_up", "in_flight", "finished", "coordinating"};
  const auto i = static_cast<std::size_t>(p);
  return i < names.size() ? names[i] : "unknown";
}

std::string_view to_string(Next n) noexcept {
  static constexpr std::array<std::string_view, 10> names = {
      "nothing", "refuse", "route", "queue", "look_up", "send", "send_batch", "schedule", "finish", "coordinate"};
  const auto i = static_cast<std::size_t>(n);
  return i < names.size() ? names[i] : "unknown";
}

DeliveryMachine::DeliveryMachine(RetryPolicy retry, std::uint64_t seed) : retry_(retry), rng_(seed) {}

Step DeliveryMachine::recovered(Delivery& x, std::int64_t updated_at_ms) const {
  expect(x, Phase::scheduled, "recovered");
  Step s;
  s.next = Next::schedule;
  s.at_ms = x.n.send_at_ms;
  // A scheduled retry, or a rule's Plan.defer, is due at next_at.
  if (x.d.state == State::retry_scheduled || x.d.state == State::queued) s.at_ms = std::max(s.at_ms, x.d.next_at_ms);
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

Step DeliveryMachine::routed(Delivery& x, RouteResult r, std::int64_t now) const {
  expect(x, Phase::taken, "routed");
  Step s;
  if (!r.ok) {
    switch (r.kind) {
      case RouteResult::Kind::skip:
        finish(x, s, State::skipped, EventKind::skipped, "skipped by the rule: " + r.error);
        break;
      case RouteResult::Kind::defer: {
        // Asked again then: nothing is kept of this answer. Recovery reads next_at as the due time.
        if (r.defer_until_ms < 0) r.defer_until_ms = now - r.defer_until_ms;  // a delay from now
        x.d.next_at_ms = r.defer_until_ms;
        Event e = event_of(x, EventKind::postponed);
        e.detail = "the rule asked to be asked again at " + std::to_string(r.defer_until_ms);
        s.events.push_back(std::move(e));
        s.save = true;
        s.next = Next::schedule;
        s.at_ms = r.defer_until_ms;
        x.phase = Phase::scheduled;
        break;
      }
      case RouteResult::Kind::error:
        x.failure = ErrorClass::routing_error;
        dead_letter(x, s, std::move(r.error));
        break;
    }
    return s;
  }
  if (x.n.parent_id != 0) {
    // A step of a plan with many steps, routed again after a restart: it carries out its own step.
    const auto k = static_cast<std::size_t>(x.n.step);
    if (k >= r.plan->steps.size()) {
      x.failure = ErrorClass::routing_error;
      dead_letter(x, s, "the rules' plan has no step " + std::to_string(k) + " any more");
      return s;
    }
    x.plan = step_of(r.plan, k);
  } else if (r.plan->cascade()) {
    return begin_cascade(x, *r.plan, now);
  } else {
    x.plan = step_of(r.plan, 0);
  }
  x.routed = true;
  if (x.d.provider_index >= static_cast<int>(x.plan->providers.size())) {
    x.d.provider_index = 0;  // the rules changed since a restart: start the chain again
    x.d.provider_attempt = 0;
  }
  Event e = event_of(x, EventKind::routed);
  e.detail = x.plan->channel + " via ";
  for (std::size_t k = 0; k < x.plan->providers.size(); ++k) e.detail += (k ? "," : "") + x.plan->providers[k];
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
    std::string reason = (why->reason == SuppressionReason::opted_out ? "recipient opted out of " : "address unusable on ") +
                         why->channel + " (" + why->detail + ", notification " + std::to_string(why->notification_id) + ")";
    // Another provider of the chain may reach the recipient at another address (an APNs token
    // where the FCM token is unusable): an opt-out holds for the whole channel.
    if (why->reason == SuppressionReason::unusable && has_next_provider(x)) {
      fail_over(x, s, reason);
    } else {
      finish(x, s, State::suppressed, EventKind::suppressed, std::move(reason));
    }
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
  s.next = x.plan->batch && !x.alone && p.batches && x.doubt == Doubt::none ? Next::send_batch : Next::send;
  return s;
}

bool DeliveryMachine::can_join(const Delivery& first, const Delivery& other) {
  return other.phase == Phase::waiting_for_slot && other.plan->batch && !other.alone && other.doubt == Doubt::none &&
         other.plan->channel == first.plan->channel && other.plan->template_text == first.plan->template_text &&
         other.plan->content == first.plan->content;
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
  x.d.channel = x.plan->channel;
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

Step DeliveryMachine::build_failed(Delivery& x, const ProviderFacts& p, const std::string& error,
                                   bool template_fault) const {
  expect(x, Phase::waiting_for_slot, "build_failed");
  x.failure = ErrorClass::template_error;
  Step s;
  dead_letter(x, s, template_fault ? error : p.name + " could not build the request: " + error);
  return s;
}

Step DeliveryMachine::answered(Delivery& x, const ProviderFacts& p, const Outcome& out, const AnswerFacts& facts,
                               std::int64_t now) {
  expect(x, Phase::in_flight, "answered");
  Step s;
  s.events.reserve(2);  // most answers record two (accepted and completed, a failure and what follows)
  auto failed_attempt = [&] {
    x.failure = facts.error_class;
    Event e = answer_event(x, EventKind::attempt_failed, p, facts);
    e.error_class = x.failure;
    e.detail = out.error;
    e.provider_code = out.provider_code;
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
      e.segments = facts.segments;
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
      // An invalid number or an unregistered token will not get better: never try it again. The
      // next provider of the chain may use another address (an APNs token after an FCM one); one
      // that uses the same address meets its suppression before any request. Without a known
      // address nothing tells the two apart: it ends here.
      suppress_address(SuppressionReason::unusable);
      if (has_next_provider(x) && s.suppress) {
        fail_over(x, s, "recipient invalid: " + out.error);
      } else {
        dead_letter(x, s, "recipient invalid: " + out.error);
      }
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

Step DeliveryMachine::provider_unusable(Delivery& x, const std::string& why) const {
  expect(x, Phase::waiting_for_slot, "provider_unusable");
  Step s;
  x.failure = ErrorClass::no_provider;
  Event e = event_of(x, EventKind::attempt_failed);
  e.provider = x.current_provider();
  e.error_class = ErrorClass::no_provider;
  e.detail = "not sent to " + x.current_provider() + ": " + why;
  s.events.push_back(std::move(e));
  fail_over(x, s, x.current_provider() + ": " + why);
  return s;
}

Step DeliveryMachine::cancel(Delivery& x) const {
  if (x.phase == Phase::coordinating) return cancel_cascade(x);
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
  const std::string& open = x.plan->providers.at(from);
  std::size_t soonest = from;
  for (std::size_t k = from + 1; k < x.plan->providers.size() && k < half_open_at.size(); ++k) {
    if (half_open_at[k] == 0) {
      move_to_provider(x, s, k, "circuit open");
      return s;
    }
    if (half_open_at[k] < half_open_at[soonest]) soonest = k;
  }
  // Every provider from here is open. A step with a fallback after it ends now, so the fallback
  // starts instead of the plan waiting on a broken channel; otherwise wait for the first to let a
  // probe through.
  if (x.has_fallback) {
    x.failure = ErrorClass::no_provider;
    dead_letter(x, s, "every provider of the step from " + open + " on has its circuit open");
    return s;
  }
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
  e.provider = x.plan->providers[soonest];
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
