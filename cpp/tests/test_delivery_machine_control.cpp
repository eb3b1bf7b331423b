// The delivery state machine under control from outside (cancel, retry of a dead letter), its
// refusal of a transition from the wrong phase, and random paths that must each end once.
// Every transition driven directly: no store, socket, thread or clock.
#include <gtest/gtest.h>

#include <random>
#include <stdexcept>

#include "delivery_machine_test_support.hpp"
#include "herald/delivery.hpp"

using namespace herald;
using namespace herald::delivery_test;

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
