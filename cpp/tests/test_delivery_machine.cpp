// The delivery state machine, every transition driven directly: no store, socket, thread or clock.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "herald/delivery.hpp"

using namespace herald;

namespace {

constexpr std::int64_t t0 = 1'000'000;  // "now" of these tests, in ms

Delivery fresh(Id id = 7) {
  Delivery x;
  x.n.id = id;
  x.n.type = "otp";
  x.n.tenant = "acme";
  x.n.recipient_id = "u1";
  x.n.created_at_ms = t0;
  return x;
}

RouteResult plan_of(std::vector<std::string> providers, bool batch = false) {
  PlanStep step;
  step.channel = "sms";
  step.providers = std::move(providers);
  step.template_text = "code {code}";
  step.batch = batch;
  return RouteResult::of(Plan::one(std::move(step)));
}

ProviderFacts provider(std::string name, int max_attempts = 3) {
  ProviderFacts p;
  p.name = std::move(name);
  p.max_attempts = max_attempts;
  p.cost_per_message = 0.01;
  return p;
}

/// A notification routed to `providers` and waiting for a slot of the first.
Delivery waiting(const DeliveryMachine& m, std::vector<std::string> providers, bool batch = false) {
  Delivery x = fresh();
  m.take(x, t0);
  m.routed(x, plan_of(std::move(providers), batch), t0);
  return x;
}

/// ... and in flight on it.
Delivery in_flight(DeliveryMachine& m, std::vector<std::string> providers) {
  Delivery x = waiting(m, std::move(providers));
  m.sending(x, provider(x.current_provider()), "+15550001", "");
  return x;
}

Outcome outcome(OutcomeKind kind, std::string error = {}) {
  Outcome o;
  o.kind = kind;
  o.error = std::move(error);
  if (kind == OutcomeKind::accepted) o.provider_message_id = "SM1";
  return o;
}

std::vector<std::string> kinds(const Step& s) {
  std::vector<std::string> out;
  for (const auto& e : s.events) out.emplace_back(to_string(e.kind));
  return out;
}

using Kinds = std::vector<std::string>;

}  // namespace

TEST(DeliveryMachine, TakeRoutesANewNotification) {
  DeliveryMachine m;
  Delivery x = fresh();
  const Step s = m.take(x, t0);
  EXPECT_EQ(s.next, Next::route);
  EXPECT_EQ(x.phase, Phase::taken);
  EXPECT_TRUE(x.outstanding());
  EXPECT_TRUE(s.events.empty());
}

TEST(DeliveryMachine, TakeExpiresWhatIsPastItsExpiry) {
  DeliveryMachine m;
  Delivery x = fresh();
  x.n.expires_at_ms = t0;
  const Step s = m.take(x, t0);
  EXPECT_EQ(s.next, Next::finish);
  EXPECT_EQ(x.d.state, State::expired);
  EXPECT_EQ(x.phase, Phase::finished);
  ASSERT_EQ(kinds(s), Kinds{"expired"});
  EXPECT_EQ(s.events[0].error_class, ErrorClass::expired);
  EXPECT_TRUE(s.save);
}

TEST(DeliveryMachine, TakeQueuesWhatIsAlreadyRouted) {
  DeliveryMachine m;
  Delivery x = waiting(m, {"a"});
  Step s = m.start(x, provider("a"));
  s = m.sending(x, provider("a"), "", "");
  s = m.answered(x, provider("a"), outcome(OutcomeKind::retryable, "HTTP 503"), {}, t0);
  ASSERT_EQ(s.next, Next::schedule);
  s = m.take(x, s.at_ms);
  EXPECT_EQ(s.next, Next::queue);
  EXPECT_EQ(x.phase, Phase::waiting_for_slot);
}

TEST(DeliveryMachine, RoutedQueuesForTheFirstProviderAndSaysTheChain) {
  DeliveryMachine m;
  Delivery x = fresh();
  m.take(x, t0);
  const Step s = m.routed(x, plan_of({"twilio", "vonage"}), t0);
  EXPECT_EQ(s.next, Next::queue);
  EXPECT_EQ(x.current_provider(), "twilio");
  ASSERT_EQ(kinds(s), Kinds{"routed"});
  EXPECT_EQ(s.events[0].detail, "sms via twilio,vonage");
  EXPECT_EQ(s.events[0].channel, "sms");
  EXPECT_FALSE(s.save);
}

TEST(DeliveryMachine, ARuleErrorDeadLettersWithTheReason) {
  DeliveryMachine m;
  Delivery x = fresh();
  m.take(x, t0);
  RouteResult r;
  r.error = "routing failed: KeyError 'phone'";
  const Step s = m.routed(x, r, t0);
  EXPECT_EQ(s.next, Next::finish);
  EXPECT_EQ(x.d.state, State::dead_lettered);
  EXPECT_EQ(x.d.last_error, "routing failed: KeyError 'phone'");
  ASSERT_EQ(kinds(s), Kinds{"dead_lettered"});
  EXPECT_EQ(s.events[0].error_class, ErrorClass::routing_error);
}

TEST(DeliveryMachine, APlanShorterThanTheStoredChainStartsItAgain) {
  DeliveryMachine m;
  Delivery x = fresh();
  x.d.provider_index = 2;  // from before a restart, under other rules
  x.d.provider_attempt = 1;
  m.take(x, t0);
  m.routed(x, plan_of({"only"}), t0);
  EXPECT_EQ(x.d.provider_index, 0);
  EXPECT_EQ(x.d.provider_attempt, 0);
}

TEST(DeliveryMachine, AtHeadExpiresOrSuppressesOrGoesOn) {
  DeliveryMachine m;
  Delivery x = waiting(m, {"a"});
  EXPECT_EQ(m.at_head(x, nullptr, t0).next, Next::nothing);
  EXPECT_EQ(x.phase, Phase::waiting_for_slot);

  Suppression why;
  why.channel = "sms";
  why.reason = SuppressionReason::opted_out;
  why.detail = "STOP";
  why.notification_id = 3;
  Step s = m.at_head(x, &why, t0);
  EXPECT_EQ(s.next, Next::finish);
  EXPECT_EQ(x.d.state, State::suppressed);
  ASSERT_EQ(kinds(s), Kinds{"suppressed"});
  EXPECT_EQ(s.events[0].detail, "recipient opted out of sms (STOP, notification 3)");

  Delivery y = waiting(m, {"a"});
  y.n.expires_at_ms = t0 + 5;
  s = m.at_head(y, nullptr, t0 + 5);
  EXPECT_EQ(y.d.state, State::expired);
}

TEST(DeliveryMachine, StartSendsAloneOrInABatch) {
  DeliveryMachine m;
  Delivery x = waiting(m, {"a"});
  EXPECT_EQ(m.start(x, provider("a")).next, Next::send);
  Delivery b = waiting(m, {"a"}, true);
  ProviderFacts batching = provider("a");
  batching.batches = true;
  EXPECT_EQ(m.start(b, batching).next, Next::send_batch);
  b.alone = true;
  EXPECT_EQ(m.start(b, batching).next, Next::send);
}

TEST(DeliveryMachine, SendingMarksTheAttempt) {
  DeliveryMachine m;
  Delivery x = waiting(m, {"a"});
  const Step s = m.sending(x, provider("a"), "+1555", "in a batch of 2");
  EXPECT_EQ(x.phase, Phase::in_flight);
  EXPECT_TRUE(x.awaiting_answer());
  EXPECT_EQ(x.d.state, State::sending);
  EXPECT_EQ(x.d.attempt, 1);
  EXPECT_EQ(x.d.provider_attempt, 1);
  EXPECT_EQ(x.d.provider, "a");
  EXPECT_EQ(x.d.address, "+1555");
  EXPECT_EQ(x.d.channel, "sms");
  EXPECT_TRUE(s.save);
  ASSERT_EQ(kinds(s), Kinds{"sending"});
  EXPECT_EQ(s.events[0].detail, "in a batch of 2");
  EXPECT_EQ(s.events[0].attempt, 1);
}

TEST(DeliveryMachine, AcceptedCompletesAndCharges) {
  DeliveryMachine m;
  Delivery x = in_flight(m, {"a"});
  ProviderFacts p = provider("a");
  p.has_receipts = true;
  AnswerFacts f;
  f.latency_us = 1200;
  f.http_status = 201;
  const Step s = m.answered(x, p, outcome(OutcomeKind::accepted), f, t0 + 3);
  EXPECT_EQ(s.next, Next::finish);
  EXPECT_EQ(x.d.state, State::completed);
  EXPECT_EQ(x.d.provider_message_id, "SM1");
  EXPECT_DOUBLE_EQ(x.d.cost, 0.01);
  EXPECT_EQ(x.d.accepted_at_ms, t0 + 3);
  ASSERT_EQ(kinds(s), (Kinds{"accepted", "completed"}));
  EXPECT_EQ(s.events[0].latency_us, 1200);
  EXPECT_EQ(s.events[0].http_status, 201);
  EXPECT_DOUBLE_EQ(s.events[0].cost, 0.01);
  EXPECT_EQ(s.events[1].error_class, ErrorClass::none);
  EXPECT_TRUE(x.d.last_error.empty());
}

TEST(DeliveryMachine, NoReceiptsExpectedLeavesAcceptedAtUnset) {
  DeliveryMachine m;
  Delivery x = in_flight(m, {"a"});
  m.answered(x, provider("a"), outcome(OutcomeKind::accepted), {}, t0);
  EXPECT_EQ(x.d.accepted_at_ms, 0);
}

TEST(DeliveryMachine, RetryableSchedulesABackoffThenFailsOverThenDeadLetters) {
  RetryPolicy policy;
  policy.base_ms = 100;
  DeliveryMachine m(policy, 42);
  Delivery x = in_flight(m, {"a", "b"});
  AnswerFacts f;
  f.error_class = ErrorClass::provider_error;
  f.http_status = 503;
  std::int64_t now = t0;
  for (int attempt = 1; attempt < 3; ++attempt) {
    Step s = m.answered(x, provider("a"), outcome(OutcomeKind::retryable, "HTTP 503"), f, now);
    ASSERT_EQ(s.next, Next::schedule) << attempt;
    ASSERT_EQ(kinds(s), (Kinds{"attempt_failed", "retry_scheduled"}));
    EXPECT_EQ(s.events[0].error_class, ErrorClass::provider_error);
    EXPECT_EQ(x.d.state, State::retry_scheduled);
    EXPECT_EQ(x.phase, Phase::scheduled);
    EXPECT_EQ(x.d.next_at_ms, s.at_ms);
    // Equal jitter: between half and all of base << (attempt - 1).
    const std::int64_t step = 100LL << (attempt - 1);
    EXPECT_GE(s.at_ms - now, step / 2);
    EXPECT_LE(s.at_ms - now, step);
    now = s.at_ms;
    ASSERT_EQ(m.take(x, now).next, Next::queue);
    m.sending(x, provider("a"), "", "");
  }
  Step s = m.answered(x, provider("a"), outcome(OutcomeKind::retryable, "HTTP 503"), f, now);
  ASSERT_EQ(s.next, Next::queue);
  ASSERT_EQ(kinds(s), (Kinds{"attempt_failed", "failed_over"}));
  EXPECT_EQ(s.events[1].provider, "b");
  EXPECT_EQ(s.events[1].detail, "from a: HTTP 503");
  EXPECT_EQ(x.current_provider(), "b");
  EXPECT_EQ(x.d.provider_attempt, 0);
  EXPECT_EQ(x.d.state, State::routed);
  EXPECT_TRUE(s.save);

  m.sending(x, provider("b"), "", "");
  s = m.answered(x, provider("b"), outcome(OutcomeKind::permanent, "HTTP 400"), f, now);
  ASSERT_EQ(s.next, Next::finish);
  ASSERT_EQ(kinds(s), (Kinds{"attempt_failed", "dead_lettered"}));
  EXPECT_EQ(x.d.state, State::dead_lettered);
  EXPECT_EQ(x.d.last_error, "every provider failed; last error: HTTP 400");
  EXPECT_EQ(s.events[1].error_class, ErrorClass::provider_error);
  EXPECT_EQ(x.d.attempt, 4);
}

TEST(DeliveryMachine, RetryAfterIsAFloor) {
  DeliveryMachine m;
  Delivery x = in_flight(m, {"a"});
  Outcome o = outcome(OutcomeKind::retryable, "HTTP 429");
  o.retry_after_ms = 30'000;
  const Step s = m.answered(x, provider("a"), o, {}, t0);
  EXPECT_EQ(s.at_ms, t0 + 30'000);
  EXPECT_EQ(s.events[1].detail, "in 30000 ms (Retry-After 30000 ms)");
}

TEST(DeliveryMachine, ARetryThatWouldLandPastExpiryExpiresNow) {
  DeliveryMachine m;
  Delivery x = in_flight(m, {"a"});
  x.n.expires_at_ms = t0 + 10;
  Outcome o = outcome(OutcomeKind::retryable, "HTTP 429");
  o.retry_after_ms = 60'000;
  const Step s = m.answered(x, provider("a"), o, {}, t0);
  EXPECT_EQ(s.next, Next::finish);
  EXPECT_EQ(x.d.state, State::expired);
  ASSERT_EQ(kinds(s), (Kinds{"attempt_failed", "expired"}));
}

TEST(DeliveryMachine, PermanentFailsOverAtOnce) {
  DeliveryMachine m;
  Delivery x = in_flight(m, {"a", "b"});
  const Step s = m.answered(x, provider("a"), outcome(OutcomeKind::permanent, "HTTP 401"), {}, t0);
  EXPECT_EQ(s.next, Next::queue);
  EXPECT_EQ(x.current_provider(), "b");
}

TEST(DeliveryMachine, AnInvalidRecipientIsSuppressedAndTheNextProviderTried) {
  // The next provider may use another address (an APNs token after an FCM one); one that uses
  // the same address meets the suppression at the head of its queue, before any request.
  DeliveryMachine m;
  Delivery x = waiting(m, {"a", "b"});
  m.sending(x, provider("a"), "+1555", "");
  AnswerFacts f;
  f.error_class = ErrorClass::recipient_invalid;
  const Step s = m.answered(x, provider("a"), outcome(OutcomeKind::recipient_invalid, "21211"), f, t0);
  EXPECT_EQ(s.next, Next::queue);
  EXPECT_EQ(x.current_provider(), "b");
  ASSERT_TRUE(s.suppress.has_value());
  EXPECT_EQ(s.suppress->address, "+1555");
  Suppression same;
  same.channel = "sms";
  same.address = "+1555";
  same.detail = "21211";
  const Step head = m.at_head(x, &same, t0);
  EXPECT_EQ(head.next, Next::finish);
  EXPECT_EQ(x.d.state, State::suppressed);
}

TEST(DeliveryMachine, AnInvalidRecipientOnTheLastProviderIsSuppressedAndDeadLettered) {
  DeliveryMachine m;
  Delivery x = waiting(m, {"a"});
  m.sending(x, provider("a"), "", "");  // no address read when sending (nothing needed it)
  AnswerFacts f;
  f.error_class = ErrorClass::recipient_invalid;
  f.address = "+1555";
  const Step s = m.answered(x, provider("a"), outcome(OutcomeKind::recipient_invalid, "21211"), f, t0);
  EXPECT_EQ(s.next, Next::finish);
  EXPECT_EQ(x.d.state, State::dead_lettered);
  ASSERT_TRUE(s.suppress.has_value());
  EXPECT_EQ(s.suppress->address, "+1555");
  EXPECT_EQ(s.suppress->channel, "sms");
  EXPECT_EQ(s.suppress->reason, SuppressionReason::unusable);
  EXPECT_EQ(s.suppress->provider, "a");
  EXPECT_EQ(x.d.address, "+1555");
  EXPECT_EQ(s.events.back().error_class, ErrorClass::recipient_invalid);
}

TEST(DeliveryMachine, AnOptOutEndsSuppressed) {
  DeliveryMachine m;
  Delivery x = in_flight(m, {"a", "b"});
  AnswerFacts f;
  f.error_class = ErrorClass::opted_out;
  const Step s = m.answered(x, provider("a"), outcome(OutcomeKind::recipient_opted_out, "21610"), f, t0);
  EXPECT_EQ(x.d.state, State::suppressed);
  ASSERT_EQ(kinds(s), (Kinds{"attempt_failed", "opted_out"}));
  EXPECT_EQ(s.events.back().error_class, ErrorClass::opted_out);
  ASSERT_TRUE(s.suppress.has_value());
  EXPECT_EQ(s.suppress->reason, SuppressionReason::opted_out);
  EXPECT_EQ(s.suppress->address, "+15550001");
}

TEST(DeliveryMachine, ARefusedBatchSendsAloneWithoutCountingTheAttempt) {
  DeliveryMachine m;
  Delivery x = waiting(m, {"a"}, true);
  m.sending(x, provider("a"), "", "in a batch of 3");
  AnswerFacts f;
  f.http_status = 400;
  const Step s = m.batch_refused(x, provider("a"), outcome(OutcomeKind::permanent, "bad address"), f);
  EXPECT_EQ(s.next, Next::queue);
  EXPECT_TRUE(x.alone);
  EXPECT_EQ(x.d.provider_attempt, 0);
  EXPECT_EQ(x.d.attempt, 1);  // the attempt happened, and is in the trace
  ASSERT_EQ(kinds(s), Kinds{"attempt_failed"});
  ProviderFacts batching = provider("a");
  batching.batches = true;
  EXPECT_EQ(m.start(x, batching).next, Next::send);
}

TEST(DeliveryMachine, BuildFailureDeadLettersAsATemplateError) {
  DeliveryMachine m;
  Delivery x = waiting(m, {"a"});
  const Step s = m.build_failed(x, provider("a"), "no phone");
  EXPECT_EQ(x.d.state, State::dead_lettered);
  EXPECT_EQ(x.d.last_error, "a could not build the request: no phone");
  EXPECT_EQ(s.events.back().error_class, ErrorClass::template_error);
  // A template's fault is the reason as it is.
  Delivery y = waiting(m, {"a"});
  const Step t = m.build_failed(y, provider("a"), "template: missing variable 'code'", true);
  EXPECT_EQ(y.d.last_error, "template: missing variable 'code'");
  EXPECT_EQ(t.events.back().error_class, ErrorClass::template_error);
}

TEST(DeliveryMachine, CanJoinOnlyLikeBatchableWaitingOnes) {
  DeliveryMachine m;
  Delivery a = waiting(m, {"a"}, true);
  Delivery b = waiting(m, {"a"}, true);
  EXPECT_TRUE(DeliveryMachine::can_join(a, b));
  PlanStep other = *b.plan;
  other.template_text = "other";
  b.plan = own_step(std::move(other));
  EXPECT_FALSE(DeliveryMachine::can_join(a, b));
  Delivery c = waiting(m, {"a"}, true);
  c.alone = true;
  EXPECT_FALSE(DeliveryMachine::can_join(a, c));
  Delivery d = waiting(m, {"a"}, false);
  EXPECT_FALSE(DeliveryMachine::can_join(a, d));
  Delivery e = waiting(m, {"a"}, true);
  e.doubt = Doubt::resend;
  EXPECT_FALSE(DeliveryMachine::can_join(a, e));
}

// ---- after a crash ----------------------------------------------------------------------

namespace {

/// A notification whose attempt on `provider_name` was marked sending when the process died.
Delivery crashed_while_sending(const DeliveryMachine& m, const std::string& provider_name, Step* out = nullptr) {
  Delivery x = fresh();
  x.d.state = State::sending;
  x.d.attempt = 1;
  x.d.provider_attempt = 1;
  x.d.provider = provider_name;
  x.d.channel = "sms";
  x.d.address = "+1555";
  Step s = m.recovered(x, t0 - 50);
  if (out != nullptr) *out = s;
  return x;
}

/// ... and routed back to the same provider, waiting for a slot.
Delivery in_doubt_at_head(const DeliveryMachine& m) {
  Delivery x = crashed_while_sending(m, "a");
  m.take(x, t0);
  m.routed(x, plan_of({"a"}), t0);
  return x;
}

ProviderFacts with_lookup(std::string name) {
  ProviderFacts p = provider(std::move(name));
  p.has_lookup = true;
  return p;
}

}  // namespace

TEST(DeliveryMachine, RecoveredSendingIsInDoubt) {
  DeliveryMachine m;
  Step s;
  Delivery x = crashed_while_sending(m, "a", &s);
  EXPECT_EQ(s.next, Next::schedule);
  EXPECT_TRUE(s.save);
  EXPECT_EQ(x.d.state, State::queued);
  EXPECT_TRUE(x.d.in_doubt);
  EXPECT_EQ(x.doubt, Doubt::unasked);
  EXPECT_EQ(x.attempt_started_ms, t0 - 50);
  ASSERT_EQ(kinds(s), Kinds{"in_doubt"});
  EXPECT_EQ(s.events[0].provider, "a");
}

TEST(DeliveryMachine, RecoveredRetryIsReadyAtItsTime) {
  DeliveryMachine m;
  Delivery x = fresh();
  x.n.send_at_ms = t0;
  x.d.state = State::retry_scheduled;
  x.d.next_at_ms = t0 + 900;
  const Step s = m.recovered(x, t0);
  EXPECT_EQ(s.at_ms, t0 + 900);
  EXPECT_FALSE(s.save);
  EXPECT_TRUE(s.events.empty());
}

TEST(DeliveryMachine, InDoubtAsksTheProviderFirstWhereItCan) {
  DeliveryMachine m;
  Delivery x = in_doubt_at_head(m);
  const ProviderFacts p = with_lookup("a");
  ASSERT_EQ(m.start(x, p).next, Next::look_up);
  Step s = m.lookup_started(x, p);
  EXPECT_EQ(x.phase, Phase::looking_up);
  ASSERT_EQ(kinds(s), Kinds{"lookup"});
  // A cancel must wait for the answer.
  EXPECT_EQ(m.cancel(x).next, Next::refuse);

  LookupResult found;
  found.found = LookupResult::Found::yes;
  found.provider_message_id = "SM9";
  found.receipt.status = ReceiptStatus::delivered;
  s = m.looked_up(x, p, found, {}, t0);
  EXPECT_EQ(s.next, Next::finish);
  EXPECT_EQ(x.d.state, State::completed);
  EXPECT_EQ(x.d.provider_message_id, "SM9");
  EXPECT_EQ(x.d.attempt, 1);  // not resent
  EXPECT_EQ(s.receipt, ReceiptState::delivered);
  ASSERT_EQ(kinds(s), (Kinds{"reconciled", "completed"}));
  EXPECT_DOUBLE_EQ(x.d.cost, 0.01);
}

TEST(DeliveryMachine, ALookupThatFindsABounceSuppressesTheAddress) {
  DeliveryMachine m;
  Delivery x = in_doubt_at_head(m);
  const ProviderFacts p = with_lookup("a");
  m.lookup_started(x, p);
  LookupResult found;
  found.found = LookupResult::Found::yes;
  found.receipt.status = ReceiptStatus::bounced_hard;
  found.receipt.provider_status = "bounce";
  const Step s = m.looked_up(x, p, found, {}, t0);
  EXPECT_EQ(s.receipt, ReceiptState::bounced);
  ASSERT_TRUE(s.suppress.has_value());
  EXPECT_EQ(s.suppress->reason, SuppressionReason::unusable);
  EXPECT_EQ(s.suppress->address, "+1555");
}

TEST(DeliveryMachine, NotFoundResendsFlaggedInDoubt) {
  DeliveryMachine m;
  Delivery x = in_doubt_at_head(m);
  const ProviderFacts p = with_lookup("a");
  m.lookup_started(x, p);
  LookupResult none;
  none.found = LookupResult::Found::no;
  Step s = m.looked_up(x, p, none, {}, t0);
  EXPECT_EQ(s.next, Next::queue);
  EXPECT_EQ(x.doubt, Doubt::resend);
  EXPECT_EQ(m.start(x, p).next, Next::send);  // asked already: not again
  s = m.sending(x, p, "", "");
  EXPECT_EQ(s.events[0].detail, "resend of an attempt in doubt");
  EXPECT_EQ(x.doubt, Doubt::none);
  EXPECT_EQ(x.d.attempt, 2);
}

TEST(DeliveryMachine, UnansweredLookupsAreRetriedTwiceThenTheAttemptIsResent) {
  DeliveryMachine m;
  Delivery x = in_doubt_at_head(m);
  const ProviderFacts p = with_lookup("a");
  LookupResult unknown;
  unknown.error = "HTTP 500";
  std::int64_t now = t0;
  for (int i = 1; i <= 2; ++i) {
    ASSERT_EQ(m.start(x, p).next, Next::look_up);
    m.lookup_started(x, p);
    const Step s = m.looked_up(x, p, unknown, {}, now);
    ASSERT_EQ(s.next, Next::schedule);
    EXPECT_EQ(s.at_ms, now + 500 * i);
    EXPECT_EQ(s.events[0].detail, "status query failed: HTTP 500");
    now = s.at_ms;
    ASSERT_EQ(m.take(x, now).next, Next::queue);
  }
  m.lookup_started(x, p);
  const Step s = m.looked_up(x, p, unknown, {}, now);
  EXPECT_EQ(s.next, Next::queue);
  EXPECT_EQ(x.doubt, Doubt::resend);
}

TEST(DeliveryMachine, AProviderWithoutAStatusApiResendsAtOnce) {
  DeliveryMachine m;
  Delivery x = in_doubt_at_head(m);
  EXPECT_EQ(m.start(x, provider("a")).next, Next::send);
  EXPECT_EQ(x.doubt, Doubt::resend);
}

TEST(DeliveryMachine, AQueryThatCannotBeBuiltMeansAFlaggedResend) {
  DeliveryMachine m;
  Delivery x = in_doubt_at_head(m);
  const ProviderFacts p = with_lookup("a");
  ASSERT_EQ(m.start(x, p).next, Next::look_up);
  EXPECT_EQ(m.cannot_look_up(x).next, Next::send);
  const Step s = m.sending(x, p, "", "");
  EXPECT_EQ(s.events[0].detail, "resend of an attempt in doubt");
}

TEST(DeliveryMachine, InDoubtOnAnotherProviderIsNotAskedThere) {
  DeliveryMachine m;
  Delivery x = crashed_while_sending(m, "old");
  m.take(x, t0);
  m.routed(x, plan_of({"a"}), t0);
  EXPECT_EQ(m.start(x, with_lookup("a")).next, Next::send);
}

TEST(DeliveryMachine, AReceiptSettlesAnAttemptInDoubt) {
  DeliveryMachine m;
  Delivery x = crashed_while_sending(m, "a");
  Receipt r;
  r.provider_message_id = "SM5";
  EXPECT_EQ(m.receipt_in_doubt(x, provider("b"), r, t0).next, Next::nothing);  // another provider's
  const Step s = m.receipt_in_doubt(x, provider("a"), r, t0);
  EXPECT_EQ(s.next, Next::finish);
  EXPECT_EQ(x.d.state, State::completed);
  EXPECT_EQ(x.d.provider_message_id, "SM5");
  ASSERT_EQ(kinds(s), (Kinds{"reconciled", "completed"}));
}

TEST(DeliveryMachine, AReceiptDoesNotSettleWhileAnAnswerIsAwaitedOrWithoutDoubt) {
  DeliveryMachine m;
  Delivery x = in_flight(m, {"a"});
  EXPECT_EQ(m.receipt_in_doubt(x, provider("a"), Receipt{}, t0).next, Next::nothing);
  Delivery y = in_doubt_at_head(m);
  const ProviderFacts p = with_lookup("a");
  m.lookup_started(y, p);
  EXPECT_EQ(m.receipt_in_doubt(y, p, Receipt{}, t0).next, Next::nothing);
  EXPECT_EQ(y.phase, Phase::looking_up);
}

// ---- control --------------------------------------------------------------------------------

TEST(DeliveryMachine, CancelFinishesUnlessAnAnswerIsAwaited) {
  DeliveryMachine m;
  Delivery x = fresh();
  Step s = m.cancel(x);
  EXPECT_EQ(s.next, Next::finish);
  EXPECT_EQ(x.d.state, State::cancelled);
  ASSERT_EQ(kinds(s), Kinds{"cancelled"});
  EXPECT_EQ(s.events[0].error_class, ErrorClass::cancelled);
  EXPECT_EQ(m.cancel(x).next, Next::refuse);  // already final

  Delivery w = waiting(m, {"a"});
  EXPECT_EQ(m.cancel(w).next, Next::finish);
  Delivery f = in_flight(m, {"a"});
  EXPECT_EQ(m.cancel(f).next, Next::refuse);
  EXPECT_EQ(f.phase, Phase::in_flight);
}

TEST(DeliveryMachine, RetriedStartsTheChainAgain) {
  DeliveryMachine m;
  Delivery x = fresh();
  x.d.state = State::dead_lettered;
  x.d.provider_index = 1;
  x.d.provider_attempt = 3;
  x.d.last_error = "every provider failed";
  const Step s = m.retried(x);
  EXPECT_EQ(s.next, Next::schedule);
  EXPECT_EQ(s.at_ms, 0);
  EXPECT_TRUE(s.save);
  EXPECT_EQ(x.d.state, State::queued);
  EXPECT_EQ(x.d.provider_index, 0);
  EXPECT_EQ(x.d.provider_attempt, 0);
  EXPECT_TRUE(x.d.last_error.empty());
  ASSERT_EQ(kinds(s), Kinds{"retried"});
}

TEST(DeliveryMachine, ATransitionFromTheWrongPhaseIsRefusedLoudly) {
  DeliveryMachine m;
  Delivery x = fresh();
  EXPECT_THROW(m.sending(x, provider("a"), "", ""), std::logic_error);
  EXPECT_THROW(m.answered(x, provider("a"), outcome(OutcomeKind::accepted), {}, t0), std::logic_error);
  EXPECT_THROW(m.routed(x, plan_of({"a"}), t0), std::logic_error);
  Delivery f = in_flight(m, {"a"});
  EXPECT_THROW(m.take(f, t0), std::logic_error);
  EXPECT_THROW(m.looked_up(f, provider("a"), LookupResult{}, {}, t0), std::logic_error);
  EXPECT_EQ(f.phase, Phase::in_flight);  // unchanged
}

TEST(DeliveryMachine, EveryFinalStepEndsInAFinalStateWithOneFinalEvent) {
  // Drive many random paths; whatever happens, a finish carries exactly one final event, last,
  // and a non-final step leaves a non-final state.
  DeliveryMachine m({}, 5);
  std::mt19937_64 rng(11);
  const OutcomeKind outcomes[] = {OutcomeKind::accepted, OutcomeKind::retryable, OutcomeKind::permanent,
                                  OutcomeKind::recipient_invalid, OutcomeKind::recipient_opted_out};
  int finished = 0;
  for (int run = 0; run < 500; ++run) {
    Delivery x = fresh(run + 1);
    std::int64_t now = t0;
    Step s = m.take(x, now);
    s = m.routed(x, plan_of({"a", "b", "c"}), t0);
    for (int guard = 0; guard < 50 && s.next != Next::finish; ++guard) {
      if (s.next == Next::schedule) {
        now = s.at_ms;
        s = m.take(x, now);
        continue;
      }
      ASSERT_EQ(s.next, Next::queue);
      ProviderFacts p = provider(x.current_provider());
      m.sending(x, p, "+1555", "");
      Outcome o = outcome(outcomes[rng() % 5], "e");
      s = m.answered(x, p, o, {}, now);
      for (std::size_t i = 0; i + 1 < s.events.size(); ++i) {
        EXPECT_NE(s.events[i].kind, EventKind::completed);
        EXPECT_NE(s.events[i].kind, EventKind::dead_lettered);
      }
      if (s.next != Next::finish) {
        EXPECT_FALSE(is_terminal(x.d.state)) << to_string(x.d.state);
      }
    }
    ASSERT_EQ(s.next, Next::finish);
    EXPECT_TRUE(is_terminal(x.d.state));
    EXPECT_EQ(x.phase, Phase::finished);
    ++finished;
  }
  EXPECT_EQ(finished, 500);
}
