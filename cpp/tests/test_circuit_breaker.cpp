// The circuit breaker's transitions, driven by outcomes and an injected time: no clock, no sleep.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "herald/circuit_breaker.hpp"
#include "herald/delivery.hpp"

using herald::CircuitBreaker;
using herald::CircuitConfig;
using herald::CircuitState;
using herald::RecentLatency;

namespace {

CircuitConfig config(int consecutive, double rate = 0.5, int min_attempts = 20) {
  CircuitConfig c;
  c.consecutive_failures = consecutive;
  c.failure_rate = rate;
  c.min_attempts = min_attempts;
  c.window_ms = 30'000;
  c.cooldown_ms = 10'000;
  c.probes = 1;
  return c;
}

}  // namespace

TEST(CircuitBreaker, OpensAfterARunOfFailures) {
  CircuitBreaker b(config(5, 0));
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(b.record(false, 1000 + i));
  EXPECT_EQ(b.state(), CircuitState::closed);
  EXPECT_TRUE(b.allow(1004));
  auto t = b.record(false, 1005);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->from, CircuitState::closed);
  EXPECT_EQ(t->to, CircuitState::open);
  EXPECT_EQ(t->reason, "5 failures in a row");
  EXPECT_EQ(b.state(), CircuitState::open);
  EXPECT_FALSE(b.allow(1006));
  EXPECT_EQ(b.half_open_at(), 11'005);
}

TEST(CircuitBreaker, ASuccessBreaksTheRun) {
  CircuitBreaker b(config(3, 0));
  b.record(false, 1);
  b.record(false, 2);
  b.record(true, 3);
  b.record(false, 4);
  b.record(false, 5);
  EXPECT_EQ(b.state(), CircuitState::closed);
  EXPECT_TRUE(b.record(false, 6));
}

TEST(CircuitBreaker, OpensOnTheFailureRateOnlyWithEnoughAttempts) {
  CircuitBreaker b(config(0, 0.5, 20));
  // 9 failures of 18: the rate is there, the attempts are not.
  for (int i = 0; i < 18; ++i) EXPECT_FALSE(b.record(i % 2 == 0, 100 * i));
  EXPECT_EQ(b.attempts(1800), 18);
  EXPECT_DOUBLE_EQ(b.failure_rate(1800), 0.5);
  EXPECT_FALSE(b.record(true, 1800));  // 19 attempts, 9 failures
  auto t = b.record(false, 1900);      // 20 attempts, 10 failures: 50%
  ASSERT_TRUE(t);
  EXPECT_EQ(t->reason, "10 of 20 attempts failed in the last 30000 ms");
}

TEST(CircuitBreaker, OldAttemptsLeaveTheWindow) {
  CircuitBreaker b(config(0, 0.5, 20));
  for (int i = 0; i < 15; ++i) b.record(false, 0);
  EXPECT_EQ(b.attempts(29'999), 15);
  EXPECT_EQ(b.attempts(30'000), 0);  // its slice of the window has gone by
  EXPECT_DOUBLE_EQ(b.failure_rate(30'000), 0.0);
  // 15 old failures do not count with 10 new ones (only 10 attempts in the window).
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(b.record(false, 31'000));
  EXPECT_EQ(b.state(), CircuitState::closed);
  // A slice reused by a later time starts from zero, even if nothing read it meanwhile.
  EXPECT_EQ(b.attempts(61'000), 0);
}

TEST(CircuitBreaker, HalfOpenAfterTheCoolDownLetsOneProbeThrough) {
  CircuitBreaker b(config(2, 0));
  b.record(false, 0);
  b.record(false, 0);
  ASSERT_EQ(b.state(), CircuitState::open);
  EXPECT_FALSE(b.tick(9'999));
  EXPECT_FALSE(b.allow(9'999));
  auto t = b.tick(10'000);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->from, CircuitState::open);
  EXPECT_EQ(t->to, CircuitState::half_open);
  EXPECT_TRUE(b.allow(10'000));   // the probe
  EXPECT_FALSE(b.allow(10'001));  // only one
  EXPECT_FALSE(b.tick(10'002));
  t = b.record(true, 10'050);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->to, CircuitState::closed);
  EXPECT_EQ(t->reason, "probe succeeded");
  EXPECT_TRUE(b.allow(10'051));
  EXPECT_EQ(b.attempts(10'051), 0);  // a fresh window after closing
  // The run was cleared too: one failure does not reopen it.
  EXPECT_FALSE(b.record(false, 10'060));
}

TEST(CircuitBreaker, AFailedProbeReopensForAnotherCoolDown) {
  CircuitBreaker b(config(1, 0));
  b.record(false, 0);
  b.tick(10'000);
  ASSERT_TRUE(b.allow(10'000));
  auto t = b.record(false, 10'100);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->from, CircuitState::half_open);
  EXPECT_EQ(t->to, CircuitState::open);
  EXPECT_EQ(t->reason, "probe failed");
  EXPECT_EQ(b.half_open_at(), 20'100);
  EXPECT_FALSE(b.allow(15'000));
}

TEST(CircuitBreaker, LateAnswersWhileOpenCountButDoNotMoveIt) {
  CircuitBreaker b(config(1, 0));
  b.record(false, 0);
  EXPECT_FALSE(b.record(true, 5));  // started before it opened
  EXPECT_EQ(b.state(), CircuitState::open);
  EXPECT_EQ(b.attempts(5), 2);
}

TEST(CircuitBreaker, SeveralProbes) {
  CircuitConfig c = config(1, 0);
  c.probes = 3;
  CircuitBreaker b(c);
  b.record(false, 0);
  b.tick(10'000);
  EXPECT_TRUE(b.allow(10'000));
  EXPECT_TRUE(b.allow(10'000));
  EXPECT_TRUE(b.allow(10'000));
  EXPECT_FALSE(b.allow(10'000));
}

TEST(CircuitBreaker, AProbeThatNeverAnswersIsGivenUpAfterACoolDown) {
  CircuitBreaker b(config(1, 0));
  b.record(false, 0);
  b.tick(10'000);
  ASSERT_TRUE(b.allow(10'000));  // its request was never sent: no outcome comes
  b.tick(19'999);
  EXPECT_FALSE(b.allow(19'999));
  b.tick(20'000);
  EXPECT_TRUE(b.allow(20'000));
  EXPECT_EQ(b.state(), CircuitState::half_open);
}

TEST(CircuitBreaker, BothRulesOffNeverOpens) {
  CircuitBreaker b(config(0, 0));
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(b.record(false, i));
  EXPECT_EQ(b.state(), CircuitState::closed);
  EXPECT_DOUBLE_EQ(b.failure_rate(999), 1.0);
}

TEST(CircuitBreaker, StateNames) {
  EXPECT_EQ(herald::to_string(CircuitState::closed), "closed");
  EXPECT_EQ(herald::to_string(CircuitState::open), "open");
  EXPECT_EQ(herald::to_string(CircuitState::half_open), "half_open");
}

TEST(RecentLatency, P99OfTheLatestRoundTrips) {
  RecentLatency r;
  EXPECT_EQ(r.p99_ms(), -1);
  for (int i = 1; i <= 100; ++i) r.add(i * 1000);  // 1..100 ms
  EXPECT_DOUBLE_EQ(r.p99_ms(), 99.0);
  // The ring keeps the latest 256: old slow ones fall out.
  for (int i = 0; i < 256; ++i) r.add(2000);
  EXPECT_DOUBLE_EQ(r.p99_ms(), 2.0);
}

// What the breaker costs on the loop's hot path: one allow() and one record() per attempt.
TEST(CircuitBreaker, CostOfAllowAndRecord) {
  CircuitBreaker b;
  constexpr int n = 1'000'000;
  const auto t0 = std::chrono::steady_clock::now();
  int allowed = 0;
  for (int i = 0; i < n; ++i) {
    allowed += b.allow(i) ? 1 : 0;
    b.record(i % 10 != 0, i);
  }
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(allowed, n);  // 10% failures never open it
  std::printf("allow+record: %.1f ns per attempt\n", static_cast<double>(ns) / n);
}

// ---- the delivery machine's move when a provider's circuit is open --------------------------------
// (here rather than in test_delivery_machine_sending.cpp: the one transition the breaker adds)

namespace {

constexpr std::int64_t now0 = 1'000'000;

herald::Delivery routed_to(const herald::DeliveryMachine& m, std::vector<std::string> chain,
                           std::int64_t expires_at = 0) {
  herald::Delivery x;
  x.n.id = 9;
  x.n.type = "otp";
  x.n.expires_at_ms = expires_at;
  m.take(x, now0);
  herald::PlanStep step;
  step.channel = "sms";
  step.providers = std::move(chain);
  m.routed(x, herald::RouteResult::of(herald::Plan::one(std::move(step))), now0);
  return x;
}

}  // namespace

TEST(ProviderUnavailable, GoesOnToTheNextProviderWhoseCircuitIsNotOpenWithoutAnAttempt) {
  herald::DeliveryMachine m;
  herald::Delivery x = routed_to(m, {"a", "b", "c"});
  const herald::Step s = m.provider_unavailable(x, {now0 + 5000, now0 + 2000, 0}, now0);
  EXPECT_EQ(s.next, herald::Next::queue);
  ASSERT_EQ(s.events.size(), 1U);
  EXPECT_EQ(s.events[0].kind, herald::EventKind::failed_over);
  EXPECT_EQ(s.events[0].provider, "c");
  EXPECT_EQ(s.events[0].detail, "from a: circuit open");
  EXPECT_EQ(x.current_provider(), "c");
  EXPECT_EQ(x.d.attempt, 0);
  EXPECT_EQ(x.phase, herald::Phase::waiting_for_slot);
  EXPECT_TRUE(s.save);
}

TEST(ProviderUnavailable, WithEveryProviderFromHereOpenItWaitsForTheFirstToHalfOpen) {
  herald::DeliveryMachine m;
  herald::Delivery x = routed_to(m, {"a", "b"});
  const herald::Step s = m.provider_unavailable(x, {now0 + 5000, now0 + 2000}, now0);
  EXPECT_EQ(s.next, herald::Next::schedule);
  EXPECT_EQ(s.at_ms, now0 + 2000);
  EXPECT_EQ(x.current_provider(), "b");  // the one that lets a probe through first
  EXPECT_EQ(x.d.state, herald::State::retry_scheduled);
  EXPECT_EQ(x.phase, herald::Phase::scheduled);
  ASSERT_EQ(s.events.size(), 1U);
  EXPECT_EQ(s.events[0].kind, herald::EventKind::retry_scheduled);
  EXPECT_EQ(s.events[0].detail,
            "in 2000 ms: every provider of the plan from a on has its circuit open; waiting for b to let a probe through");
}

TEST(ProviderUnavailable, ProvidersBeforeThePlaceInTheChainAreNotGoneBackTo) {
  herald::DeliveryMachine m;
  herald::Delivery x = routed_to(m, {"a", "b"});
  x.d.provider_index = 1;
  const herald::Step s = m.provider_unavailable(x, {0, now0 + 3000}, now0);
  EXPECT_EQ(s.next, herald::Next::schedule);
  EXPECT_EQ(s.at_ms, now0 + 3000);
  EXPECT_EQ(x.current_provider(), "b");
}

TEST(ProviderUnavailable, AWaitPastTheExpiryExpiresNow) {
  herald::DeliveryMachine m;
  herald::Delivery x = routed_to(m, {"a"}, now0 + 1000);
  const herald::Step s = m.provider_unavailable(x, {now0 + 5000}, now0);
  EXPECT_EQ(s.next, herald::Next::finish);
  EXPECT_EQ(x.d.state, herald::State::expired);
}

TEST(ProviderUnavailable, OnlyWhileWaitingForASlot) {
  herald::DeliveryMachine m;
  herald::Delivery x = routed_to(m, {"a"});
  herald::ProviderFacts p;
  p.name = "a";
  m.sending(x, p, "", "");
  EXPECT_THROW(m.provider_unavailable(x, {now0 + 1}, now0), std::logic_error);
}
