// Plans with many steps: the parent's transitions driven directly (no store, socket, thread or
// clock). Each test plays the shell: it starts the steps the machine asks for and reports how
// they end.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "herald/delivery.hpp"

using namespace herald;

namespace {

constexpr std::int64_t t0 = 1'000'000;

PlanStep step(std::string channel, StepStart start = StepStart::fallback, std::int64_t after_ms = 0,
              StepSuccess success = StepSuccess::accepted) {
  PlanStep s;
  s.channel = std::move(channel);
  s.providers = {s.channel + "-a", s.channel + "-b"};
  s.template_text = "code {code}";
  s.start = start;
  s.after_ms = after_ms;
  s.success = success;
  return s;
}

RouteResult plan(std::vector<PlanStep> steps) {
  Plan p;
  p.steps = std::move(steps);
  return RouteResult::of(std::move(p));
}

Delivery parent() {
  Delivery x;
  x.n.id = 42;
  x.n.type = "otp";
  x.n.created_at_ms = t0;
  return x;
}

std::vector<std::string> kinds(const Step& s) {
  std::vector<std::string> out;
  for (const auto& e : s.events) out.emplace_back(to_string(e.kind));
  return out;
}

StepRecord ended(std::size_t k, State state, ReceiptState receipt = ReceiptState::none) {
  StepRecord r;
  r.step = static_cast<int>(k);
  r.id = 100 + static_cast<Id>(k);
  r.finished = true;
  r.state = state;
  r.receipt = receipt;
  r.error = state == State::completed ? "" : "every provider failed";
  r.failure = state == State::completed ? ErrorClass::none : ErrorClass::provider_error;
  return r;
}

/// OTP: SMS, then email unless SMS is accepted within 30 s.
Delivery otp(const DeliveryMachine& m, Step& first) {
  Delivery x = parent();
  m.take(x, t0);
  first = m.routed(x, plan({step("sms"), step("email", StepStart::fallback, 30'000)}), t0);
  return x;
}

}  // namespace

TEST(CascadeMachine, AFirstGroupStartsAndTheDeadlineOfTheNextIsSet) {
  DeliveryMachine m;
  Step s;
  Delivery x = otp(m, s);
  EXPECT_EQ(x.phase, Phase::coordinating);
  EXPECT_EQ(s.next, Next::coordinate);
  EXPECT_EQ(s.start_steps, (std::vector<std::size_t>{0}));
  EXPECT_EQ(s.wake_at_ms, t0 + 30'000);
  EXPECT_TRUE(s.save);
  EXPECT_EQ(x.d.state, State::routed);
  EXPECT_EQ(kinds(s), (std::vector<std::string>{"routed", "step_started"}));
  EXPECT_EQ(s.events[1].step, 0);
  EXPECT_EQ(s.events[1].channel, "sms");
  EXPECT_NE(s.events[0].detail.find("unless done within 30 s"), std::string::npos) << s.events[0].detail;
}

TEST(CascadeMachine, ASuccessCancelsTheStepsNotStartedAndCompletes) {
  DeliveryMachine m;
  Step s;
  Delivery x = otp(m, s);
  const Step done = m.step_finished(x, ended(0, State::completed), t0 + 100);
  EXPECT_EQ(done.next, Next::finish);
  EXPECT_EQ(x.d.state, State::completed);
  EXPECT_EQ(kinds(done), (std::vector<std::string>{"step_succeeded", "step_cancelled", "completed"}));
  EXPECT_EQ(done.events[1].step, 1);
  EXPECT_TRUE(done.start_steps.empty());
}

TEST(CascadeMachine, AFailedStepStartsTheFallbackAtOnce) {
  DeliveryMachine m;
  Step s;
  Delivery x = otp(m, s);
  const Step next = m.step_finished(x, ended(0, State::dead_lettered), t0 + 100);
  EXPECT_EQ(next.next, Next::coordinate);
  EXPECT_EQ(next.start_steps, (std::vector<std::size_t>{1}));
  EXPECT_EQ(kinds(next), (std::vector<std::string>{"step_failed", "step_started"}));
  EXPECT_EQ(next.events[0].error_class, ErrorClass::provider_error);
  EXPECT_EQ(next.wake_at_ms, 0);  // no step after it
  const Step last = m.step_finished(x, ended(1, State::completed), t0 + 200);
  EXPECT_EQ(last.next, Next::finish);
  EXPECT_EQ(x.d.state, State::completed);
  EXPECT_EQ(x.d.channel, "email");
}

TEST(CascadeMachine, TheDeadlineStartsTheFallbackWhenNothingSucceeded) {
  DeliveryMachine m;
  Step s;
  Delivery x = otp(m, s);
  EXPECT_EQ(m.deadline(x, t0 + 29'999).wake_at_ms, t0 + 30'000);  // early wake-up: wait on
  const Step d = m.deadline(x, t0 + 30'000);
  EXPECT_EQ(d.start_steps, (std::vector<std::size_t>{1}));
  EXPECT_NE(d.events[0].detail.find("did not succeed within 30 s"), std::string::npos) << d.events[0].detail;
  // The SMS is accepted late: nothing is left to cancel, and the plan waits for the email.
  const Step late = m.step_finished(x, ended(0, State::completed), t0 + 31'000);
  EXPECT_EQ(kinds(late), (std::vector<std::string>{"step_succeeded"}));
  EXPECT_EQ(late.next, Next::nothing);
  const Step last = m.step_finished(x, ended(1, State::dead_lettered), t0 + 32'000);
  EXPECT_EQ(last.next, Next::finish);
  EXPECT_EQ(x.d.state, State::completed);  // the SMS got through
}

TEST(CascadeMachine, EveryStepFailingDeadLettersWithTheLastReason) {
  DeliveryMachine m;
  Step s;
  Delivery x = otp(m, s);
  m.step_finished(x, ended(0, State::dead_lettered), t0);
  const Step last = m.step_finished(x, ended(1, State::suppressed), t0);
  EXPECT_EQ(last.next, Next::finish);
  EXPECT_EQ(x.d.state, State::suppressed);
  EXPECT_NE(x.d.last_error.find("every step failed"), std::string::npos);
}

TEST(CascadeMachine, AStepThatMustBeReadWaitsForTheReadOrItsDeadline) {
  DeliveryMachine m;
  Delivery x = parent();
  m.take(x, t0);
  m.routed(x, plan({step("push", StepStart::fallback, 0, StepSuccess::read), step("email", StepStart::fallback, 600'000)}), t0);
  const Step accepted = m.step_finished(x, ended(0, State::completed), t0 + 50);
  EXPECT_TRUE(accepted.events.empty());
  EXPECT_EQ(accepted.next, Next::coordinate);  // nothing runs: it waits for the read
  EXPECT_EQ(accepted.wake_at_ms, t0 + 600'000);
  EXPECT_EQ(m.step_receipt(x, 0, ReceiptState::delivered, t0 + 60).next, Next::nothing);  // delivered is not read
  const Step read = m.acknowledged(x, "push", t0 + 70);
  EXPECT_EQ(kinds(read), (std::vector<std::string>{"step_succeeded", "step_cancelled", "completed"}));
  EXPECT_EQ(x.d.state, State::completed);
}

TEST(CascadeMachine, AFailedReceiptStartsTheFallbackBeforeItsDeadline) {
  DeliveryMachine m;
  Delivery x = parent();
  m.take(x, t0);
  m.routed(x, plan({step("sms", StepStart::fallback, 0, StepSuccess::delivered), step("email", StepStart::fallback, 60'000)}), t0);
  m.step_finished(x, ended(0, State::completed), t0);
  const Step s = m.step_receipt(x, 0, ReceiptState::failed, t0 + 5);
  EXPECT_EQ(s.start_steps, (std::vector<std::size_t>{1}));
  EXPECT_EQ(kinds(s), (std::vector<std::string>{"step_failed", "step_started"}));
}

TEST(CascadeMachine, AParallelGroupStartsTogetherAndEndsWhenAllHaveAnswered) {
  DeliveryMachine m;
  Delivery x = parent();
  m.take(x, t0);
  const Step s = m.routed(
      x, plan({step("push"), step("sms", StepStart::with_previous), step("email", StepStart::with_previous)}), t0);
  EXPECT_EQ(s.start_steps, (std::vector<std::size_t>{0, 1, 2}));
  EXPECT_EQ(s.wake_at_ms, 0);
  // The push succeeds first: the others already run, so nothing is cancelled and the plan waits.
  const Step first = m.step_finished(x, ended(0, State::completed), t0);
  EXPECT_EQ(kinds(first), (std::vector<std::string>{"step_succeeded"}));
  EXPECT_EQ(first.next, Next::nothing);
  m.step_finished(x, ended(1, State::dead_lettered), t0);
  const Step last = m.step_finished(x, ended(2, State::completed), t0);
  EXPECT_EQ(last.next, Next::finish);
  EXPECT_EQ(x.d.state, State::completed);
}

TEST(CascadeMachine, CancelStopsWhatHasNotStartedAndEndsWhenTheRunningStepsEnd) {
  DeliveryMachine m;
  Step s;
  Delivery x = otp(m, s);
  const Step c = m.cancel(x);
  EXPECT_EQ(kinds(c), (std::vector<std::string>{"step_cancelled"}));
  EXPECT_EQ(c.next, Next::nothing);
  const Step last = m.step_finished(x, ended(0, State::cancelled), t0);
  EXPECT_EQ(last.next, Next::finish);
  EXPECT_EQ(x.d.state, State::cancelled);
  EXPECT_TRUE(last.start_steps.empty());
}

TEST(CascadeMachine, AfterARestartItGoesOnFromTheStepsRecorded) {
  DeliveryMachine m;
  Delivery x = parent();
  x.d.state = State::routed;  // its steps started before the restart
  m.take(x, t0 + 40'000);
  const Step r = m.routed(x, plan({step("sms"), step("email", StepStart::fallback, 30'000)}), t0 + 40'000);
  EXPECT_TRUE(r.resume);
  StepRecord sms = ended(0, State::queued);
  sms.finished = false;
  sms.started_ms = t0;
  // The SMS still runs and its deadline passed during the restart: the email starts now.
  const Step s = m.resume(x, {sms}, t0 + 40'000);
  EXPECT_EQ(s.start_steps, (std::vector<std::size_t>{1}));
  // A second resume with both recorded, the SMS accepted: completed without starting anything.
  Delivery y = parent();
  y.d.state = State::routed;
  m.take(y, t0);
  m.routed(y, plan({step("sms"), step("email", StepStart::fallback, 30'000)}), t0);
  StepRecord email = ended(1, State::queued);
  email.finished = false;
  const Step t = m.resume(y, {ended(0, State::completed), email}, t0 + 1);
  EXPECT_TRUE(t.start_steps.empty());
  EXPECT_EQ(t.wake_at_ms, 0);  // the email still runs; the plan has succeeded: no deadline left
  EXPECT_EQ(m.step_finished(y, ended(1, State::completed), t0 + 2).next, Next::finish);
}

TEST(CascadeMachine, TheRuleMaySkipOrDefer) {
  DeliveryMachine m;
  Delivery x = parent();
  m.take(x, t0);
  RouteResult skip;
  skip.kind = RouteResult::Kind::skip;
  skip.error = "quiet hours";
  const Step s = m.routed(x, skip, t0);
  EXPECT_EQ(s.next, Next::finish);
  EXPECT_EQ(x.d.state, State::skipped);
  EXPECT_EQ(kinds(s), (std::vector<std::string>{"skipped"}));
  Delivery y = parent();
  m.take(y, t0);
  RouteResult later;
  later.kind = RouteResult::Kind::defer;
  later.defer_until_ms = -5000;  // in 5 s
  const Step d = m.routed(y, later, t0);
  EXPECT_EQ(d.next, Next::schedule);
  EXPECT_EQ(d.at_ms, t0 + 5000);
  EXPECT_FALSE(y.routed);
  EXPECT_EQ(kinds(d), (std::vector<std::string>{"postponed"}));
}

TEST(CascadeMachine, EachStepEitherStartsOrIsCancelledAndThePlanEndsOnceInAnyOrder) {
  // Every ordering of: the deadline, the SMS accepted, the SMS delivered receipt, the email
  // answered. Whatever the order, each step starts at most once, a step never both starts and is
  // cancelled, and the plan ends exactly once, after every started step ended.
  std::mt19937_64 rng(7);
  for (int run = 0; run < 2000; ++run) {
    DeliveryMachine m;
    Delivery x = parent();
    m.take(x, t0);
    std::vector<Step> steps;
    steps.push_back(m.routed(
        x, plan({step("sms", StepStart::fallback, 0, StepSuccess::delivered), step("email", StepStart::fallback, 30'000)}),
        t0));
    std::vector<int> events = {0, 1, 2, 3};
    std::shuffle(events.begin(), events.end(), rng);
    bool sms_done = false;
    for (int e : events) {
      if (x.phase == Phase::finished) break;
      switch (e) {
        case 0: steps.push_back(m.deadline(x, t0 + 30'000)); break;
        case 1: steps.push_back(m.step_finished(x, ended(0, State::completed), t0 + 1)); sms_done = true; break;
        case 2: steps.push_back(m.step_receipt(x, 0, ReceiptState::delivered, t0 + 2)); break;
        case 3: steps.push_back(m.step_finished(x, ended(1, State::dead_lettered), t0 + 3)); break;
      }
    }
    int started_email = 0, cancelled_email = 0, finishes = 0;
    for (const Step& s : steps) {
      for (std::size_t k : s.start_steps) started_email += k == 1 ? 1 : 0;
      for (const Event& ev : s.events) {
        if (ev.kind == EventKind::step_cancelled && ev.step == 1) ++cancelled_email;
      }
      finishes += s.next == Next::finish ? 1 : 0;
    }
    EXPECT_LE(started_email + cancelled_email, 1) << "run " << run;
    EXPECT_LE(finishes, 1) << "run " << run;
    if (sms_done) {
      EXPECT_NE(x.d.state, State::dead_lettered) << "run " << run;
    }
  }
}

TEST(CascadeMachine, AStepWhoseProvidersAreAllOpenFailsWhenAFallbackFollows) {
  // Waiting for a broken channel's circuit to half-open would hold the plan back: the step ends
  // so that its fallback starts. Without a fallback it waits (test_circuit_breaker.cpp).
  DeliveryMachine m;
  Delivery x;
  x.n.id = 5;
  x.n.parent_id = 42;
  m.take(x, t0);
  PlanStep sms = step("sms");
  m.routed(x, RouteResult::of(Plan::one(sms)), t0);
  // routed() of a step delivery after a restart reads its own step: step 0 here.
  x.has_fallback = true;
  const Step s = m.provider_unavailable(x, {t0 + 5000, t0 + 7000}, t0);
  EXPECT_EQ(s.next, Next::finish);
  EXPECT_EQ(x.d.state, State::dead_lettered);
  EXPECT_EQ(x.failure, ErrorClass::no_provider);
}
