// The delivery state machine after a crash: an attempt left sending is in doubt, asked of the
// provider where it can be (a status lookup) or resent flagged, or settled by a receipt. Every
// transition driven directly: no store, socket, thread or clock.
#include <gtest/gtest.h>

#include <string>

#include "delivery_machine_test_support.hpp"
#include "herald/delivery.hpp"

using namespace herald;
using namespace herald::delivery_test;

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
