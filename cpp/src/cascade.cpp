// Plans with many steps: the parent notification's transitions. Its steps are deliveries of their
// own (copies of it with parent_id and step set), each running one provider chain through the
// rest of the machine; the parent starts them in groups, hears how each ends (its final state,
// then its receipts or the application's acknowledgement), and ends when a step succeeded or
// none is left. Every event reaches the parent one at a time on the loop, so a receipt and a
// deadline that arrive "at once" are two events in some order: whichever comes first decides,
// and the other finds nothing left to do (tests/test_cascade_race.py checks every order).
#include <algorithm>
#include <array>

#include "delivery_detail.hpp"
#include "herald/delivery.hpp"

namespace herald {

namespace {

using namespace delivery_detail;

Event step_event(const Delivery& x, EventKind kind, std::size_t k) {
  Event e = make_event(x.n, 0, kind);
  e.step = static_cast<int>(k);
  e.channel = x.cascade->plan.steps[k].channel;
  return e;
}

std::string describe(const PlanStep& st) {
  std::string out = st.channel + " via ";
  for (std::size_t i = 0; i < st.providers.size(); ++i) out += (i ? "," : "") + st.providers[i];
  return out;
}

std::string seconds(std::int64_t ms) {
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

/// Whether a receipt meets the step's success condition.
bool meets(StepSuccess want, ReceiptState r) {
  switch (want) {
    case StepSuccess::accepted: return true;
    case StepSuccess::delivered: return r == ReceiptState::delivered || r == ReceiptState::opened;
    case StepSuccess::read: return r == ReceiptState::opened;
  }
  return false;
}

bool receipt_failed(ReceiptState r) {
  return r == ReceiptState::failed || r == ReceiptState::bounced || r == ReceiptState::unconfirmed;
}

/// Starts the group at c.next: its steps run, and the group after it gets its deadline.
void start_group(Delivery& x, Step& s, std::int64_t now, const std::string& why) {
  Cascade& c = *x.cascade;
  const std::size_t end = c.group_end(c.next);
  for (std::size_t k = c.next; k < end; ++k) {
    c.steps[k] = StepStatus::running;
    s.start_steps.push_back(k);
    Event e = step_event(x, EventKind::step_started, k);
    e.detail = describe(c.plan.steps[k]) + (why.empty() ? std::string() : "; " + why);
    s.events.push_back(std::move(e));
  }
  c.group_started_ms = now;
  c.next = end;
  c.deadline_ms = 0;
  if (c.next < c.steps.size() && c.plan.steps[c.next].after_ms > 0) c.deadline_ms = now + c.plan.steps[c.next].after_ms;
  s.next = Next::coordinate;
  s.wake_at_ms = c.deadline_ms;
}

/// The first step of the group that started last.
std::size_t current_group(const Cascade& c) {
  std::size_t first = 0;
  for (std::size_t k = 0; k < c.next; k = c.group_end(k)) first = k;
  return first;
}

void step_succeeded(Delivery& x, Step& s, std::size_t k, const std::string& how) {
  Cascade& c = *x.cascade;
  c.steps[k] = StepStatus::succeeded;
  Event e = step_event(x, EventKind::step_succeeded, k);
  e.detail = how;
  s.events.push_back(std::move(e));
}

void step_failed(Delivery& x, Step& s, std::size_t k, State as, ErrorClass failure, const std::string& why) {
  Cascade& c = *x.cascade;
  c.steps[k] = StepStatus::failed;
  c.failed_as = as;
  c.failure = failure;
  c.last_error = why;
  Event e = step_event(x, EventKind::step_failed, k);
  e.error_class = failure;
  e.detail = why;
  s.events.push_back(std::move(e));
}

/// After any change: a success cancels what has not started; a failed group starts the next;
/// with nothing running and nothing left to wait for, the plan ends.
void settle(Delivery& x, Step& s, std::int64_t now) {
  Cascade& c = *x.cascade;
  const std::size_t n = c.steps.size();
  if (!c.succeeded && std::find(c.steps.begin(), c.steps.end(), StepStatus::succeeded) != c.steps.end()) {
    c.succeeded = true;
    for (std::size_t k = c.next; k < n; ++k) {
      c.steps[k] = StepStatus::cancelled;
      Event e = step_event(x, EventKind::step_cancelled, k);
      e.detail = "an earlier step succeeded";
      s.events.push_back(std::move(e));
    }
    c.next = n;
    c.deadline_ms = 0;
  }
  if (!c.succeeded && !c.cancelled && c.next < n) {
    const std::size_t first = current_group(c);
    const bool all_failed = std::all_of(c.steps.begin() + static_cast<std::ptrdiff_t>(first),
                                        c.steps.begin() + static_cast<std::ptrdiff_t>(c.next),
                                        [](StepStatus st) { return st == StepStatus::failed; });
    if (all_failed) {
      start_group(x, s, now, first + 1 == c.next ? "step " + std::to_string(first) + " failed"
                                                  : "steps " + std::to_string(first) + "-" + std::to_string(c.next - 1) + " failed");
      return;
    }
  }
  if (std::find(c.steps.begin(), c.steps.end(), StepStatus::running) != c.steps.end()) return;
  if (!c.succeeded && !c.cancelled && c.next < n) {
    // Accepted steps wait for their receipt (or read) until the next group's deadline; without a
    // deadline, until a receipt says they failed (reconciliation gives up as unconfirmed).
    s.next = Next::coordinate;
    s.wake_at_ms = c.deadline_ms;
    return;
  }
  s.start_steps.clear();
  s.wake_at_ms = 0;
  std::size_t done = n;
  for (std::size_t k = 0; k < n; ++k) {
    if (c.steps[k] == StepStatus::succeeded || (done == n && c.steps[k] == StepStatus::accepted)) done = k;
    if (c.steps[k] == StepStatus::succeeded) break;
  }
  if (done < n) {
    x.d.channel = c.plan.steps[done].channel;
    finish(x, s, State::completed, EventKind::completed,
           "step " + std::to_string(done) + " (" + c.plan.steps[done].channel + ") " +
               (c.steps[done] == StepStatus::succeeded ? "succeeded" : "was accepted"));
    return;
  }
  if (c.cancelled) {
    finish(x, s, State::cancelled, EventKind::cancelled, "cancelled by the caller");
    return;
  }
  x.failure = c.failure;
  const std::string why = "every step failed; last: " + c.last_error;
  switch (c.failed_as) {
    case State::suppressed: finish(x, s, State::suppressed, EventKind::suppressed, why); break;
    case State::expired: finish(x, s, State::expired, EventKind::expired, why); break;
    case State::skipped: finish(x, s, State::skipped, EventKind::skipped, why); break;
    default: dead_letter(x, s, why); break;
  }
}

}  // namespace

std::string_view to_string(StepStatus st) noexcept {
  static constexpr std::array<std::string_view, 6> names = {"not_started", "running", "accepted",
                                                            "succeeded",   "failed",  "cancelled"};
  const auto i = static_cast<std::size_t>(st);
  return i < names.size() ? names[i] : "unknown";
}

std::size_t Cascade::group_end(std::size_t first) const {
  std::size_t end = first + 1;
  while (end < plan.steps.size() && plan.steps[end].start == StepStart::with_previous) ++end;
  return std::min(end, plan.steps.size());
}

Step DeliveryMachine::begin_cascade(Delivery& x, Plan plan, std::int64_t now) const {
  Step s;
  auto c = std::make_shared<Cascade>();
  c->steps.assign(plan.steps.size(), StepStatus::not_started);
  c->ids.assign(plan.steps.size(), 0);
  c->read.assign(plan.steps.size(), false);
  c->plan = std::move(plan);
  x.cascade = std::move(c);
  x.routed = true;
  x.phase = Phase::coordinating;
  Event e = event_of(x, EventKind::routed);
  e.detail = std::to_string(x.cascade->plan.steps.size()) + " steps: ";
  for (std::size_t k = 0; k < x.cascade->plan.steps.size(); ++k) {
    const PlanStep& st = x.cascade->plan.steps[k];
    if (k > 0) {
      e.detail += st.start == StepStart::with_previous ? " + "
                  : st.after_ms > 0 ? "; then, unless done within " + seconds(st.after_ms) + ", "
                                    : "; then, if it fails, ";
    }
    e.detail += describe(st);
    if (st.success != StepSuccess::accepted) e.detail += " until " + std::string(to_string(st.success));
  }
  s.events.push_back(std::move(e));
  if (x.d.state == State::routed) {
    // Its steps started before a restart: the shell reads them back and calls resume().
    s.next = Next::coordinate;
    s.resume = true;
    return s;
  }
  x.d.state = State::routed;
  s.save = true;
  start_group(x, s, now, {});
  return s;
}

Step DeliveryMachine::resume(Delivery& x, const std::vector<StepRecord>& earlier, std::int64_t now) const {
  expect(x, Phase::coordinating, "resume");
  Cascade& c = *x.cascade;
  Step s;
  std::size_t started = 0;
  std::int64_t latest_start = 0;
  for (const StepRecord& r : earlier) {
    const auto k = static_cast<std::size_t>(r.step);
    if (k >= c.steps.size()) continue;  // the rules have fewer steps now: that one finishes alone
    c.ids[k] = r.id;
    started = std::max(started, k + 1);
    latest_start = std::max(latest_start, r.started_ms);
    const StepSuccess want = c.plan.steps[k].success;
    if (!r.finished) {
      c.steps[k] = StepStatus::running;
    } else if (r.state == State::completed) {
      c.steps[k] = want == StepSuccess::accepted || meets(want, r.receipt) ? StepStatus::succeeded
                   : receipt_failed(r.receipt)                            ? StepStatus::failed
                                                                          : StepStatus::accepted;
    } else {
      c.steps[k] = StepStatus::failed;
      c.failed_as = r.state;
      c.failure = r.failure;
      c.last_error = r.error;
    }
  }
  if (started == 0) {
    // Saved as routed but no step was recorded (the rules' plan changed shape): start afresh.
    start_group(x, s, now, "resumed after a restart");
    return s;
  }
  std::size_t next = 0;
  while (next < started) next = c.group_end(next);
  c.next = next;
  c.group_started_ms = latest_start;
  c.deadline_ms = 0;
  if (c.next < c.steps.size() && c.plan.steps[c.next].after_ms > 0) c.deadline_ms = latest_start + c.plan.steps[c.next].after_ms;
  settle(x, s, now);
  if (s.next == Next::finish || !s.start_steps.empty()) return s;
  if (!c.succeeded && !c.cancelled && c.next < c.steps.size() && c.deadline_ms != 0) {
    if (now >= c.deadline_ms) {
      start_group(x, s, now, "the deadline passed during a restart");
    } else {
      s.next = Next::coordinate;  // the parent's wake-up is set again: it left the scheduler
      s.wake_at_ms = c.deadline_ms;
    }
  }
  return s;
}

Step DeliveryMachine::step_finished(Delivery& x, const StepRecord& r, std::int64_t now) const {
  expect(x, Phase::coordinating, "step_finished");
  Cascade& c = *x.cascade;
  Step s;
  const auto k = static_cast<std::size_t>(r.step);
  if (k >= c.steps.size() || c.steps[k] != StepStatus::running) return s;
  if (r.state == State::completed) {
    const StepSuccess want = c.plan.steps[k].success;
    if (want == StepSuccess::accepted) {
      step_succeeded(x, s, k, "accepted");
    } else if (meets(want, r.receipt) || c.read[k]) {
      step_succeeded(x, s, k, c.read[k] ? "read" : std::string(to_string(r.receipt)));
    } else {
      c.steps[k] = StepStatus::accepted;  // waits for its receipt or read
    }
  } else {
    step_failed(x, s, k, r.state, r.failure, r.error);
  }
  settle(x, s, now);
  return s;
}

Step DeliveryMachine::step_receipt(Delivery& x, int step, ReceiptState receipt, std::int64_t now) const {
  expect(x, Phase::coordinating, "step_receipt");
  Cascade& c = *x.cascade;
  Step s;
  const auto k = static_cast<std::size_t>(step);
  if (k >= c.steps.size() || c.steps[k] != StepStatus::accepted) return s;
  if (meets(c.plan.steps[k].success, receipt)) {
    step_succeeded(x, s, k, std::string(to_string(receipt)));
  } else if (receipt_failed(receipt)) {
    step_failed(x, s, k, State::dead_lettered, ErrorClass::recipient_invalid,
                "accepted, then the receipt said " + std::string(to_string(receipt)));
  } else {
    return s;
  }
  settle(x, s, now);
  return s;
}

Step DeliveryMachine::acknowledged(Delivery& x, const std::string& channel, std::int64_t now) const {
  expect(x, Phase::coordinating, "acknowledged");
  Cascade& c = *x.cascade;
  Step s;
  bool any = false;
  for (std::size_t k = 0; k < c.steps.size(); ++k) {
    if (c.plan.steps[k].channel != channel) continue;
    if (c.steps[k] == StepStatus::accepted) {
      step_succeeded(x, s, k, "read (acknowledged by the application)");
      any = true;
    } else if (c.steps[k] == StepStatus::running) {
      c.read[k] = true;  // read before its acceptance was recorded: it succeeds when accepted
      any = true;
    }
  }
  if (!any) return s;
  settle(x, s, now);
  return s;
}

Step DeliveryMachine::deadline(Delivery& x, std::int64_t now) const {
  expect(x, Phase::coordinating, "deadline");
  Cascade& c = *x.cascade;
  Step s;
  if (c.succeeded || c.cancelled || c.next >= c.steps.size() || c.deadline_ms == 0) return s;
  if (now < c.deadline_ms) {
    s.next = Next::coordinate;
    s.wake_at_ms = c.deadline_ms;
    return s;
  }
  const std::size_t first = current_group(c);
  start_group(x, s, now, "step " + std::to_string(first) + " did not succeed within " + seconds(c.plan.steps[c.next].after_ms));
  return s;
}

Step DeliveryMachine::cancel_cascade(Delivery& x) const {
  Cascade& c = *x.cascade;
  Step s;
  c.cancelled = true;
  for (std::size_t k = c.next; k < c.steps.size(); ++k) {
    c.steps[k] = StepStatus::cancelled;
    Event e = step_event(x, EventKind::step_cancelled, k);
    e.detail = "cancelled by the caller";
    s.events.push_back(std::move(e));
  }
  c.next = c.steps.size();
  c.deadline_ms = 0;
  settle(x, s, 0);  // ends it now unless steps still run: their cancels end it
  return s;
}

}  // namespace herald
