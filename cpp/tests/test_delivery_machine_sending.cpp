// The delivery state machine from a new notification to its end, every transition driven
// directly: routing, sending, each kind of answer (backoff, failover, suppression, batches).
// No store, socket, thread or clock.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "delivery_machine_test_support.hpp"
#include "herald/delivery.hpp"

using namespace herald;
using namespace herald::delivery_test;

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
