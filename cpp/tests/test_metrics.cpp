#include <gtest/gtest.h>

#include <string>

#include "herald/metrics.hpp"

namespace herald {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

TEST(Metrics, HistogramBucketsAreCumulativeAndABoundIsInclusive) {
  const std::vector<double> bounds{0.001, 0.01, 0.1};
  Histogram h(&bounds);
  h.observe(microseconds{1000});    // exactly 0.001: le="0.001"
  h.observe(microseconds{5000});    // 0.005
  h.observe(milliseconds{200});     // above every bound: +Inf only
  std::string out;
  h.render(out, "x_seconds", R"(p="a")");
  EXPECT_TRUE(has_line(out, R"(x_seconds_bucket{p="a",le="0.001"} 1)")) << out;
  EXPECT_TRUE(has_line(out, R"(x_seconds_bucket{p="a",le="0.01"} 2)")) << out;
  EXPECT_TRUE(has_line(out, R"(x_seconds_bucket{p="a",le="0.1"} 2)")) << out;
  EXPECT_TRUE(has_line(out, R"(x_seconds_bucket{p="a",le="+Inf"} 3)")) << out;
  EXPECT_TRUE(has_line(out, R"(x_seconds_sum{p="a"} 0.206)")) << out;
  EXPECT_TRUE(has_line(out, R"(x_seconds_count{p="a"} 3)")) << out;
}

TEST(Metrics, AttemptsByChannelSpendAndAlerts) {
  Metrics m;
  m.attempt("twilio", OutcomeKind::accepted, "sms", 0.0079);
  m.attempt("twilio", OutcomeKind::accepted, "sms", 0.0079);
  m.attempt("twilio", OutcomeKind::retryable, "sms", 0.0079);  // not accepted: costs nothing
  m.attempt("mail", OutcomeKind::permanent, "email", 0.001);
  m.alert("sms_failures", false);
  m.alert("dead \"letters\"", true);
  const std::string out = m.render(EngineStats{}, MetricsGauges{});
  EXPECT_TRUE(has_line(out, R"(herald_channel_attempts_total{channel="sms",outcome="accepted"} 2)")) << out;
  EXPECT_TRUE(has_line(out, R"(herald_channel_attempts_total{channel="sms",outcome="retryable"} 1)"));
  EXPECT_TRUE(has_line(out, R"(herald_channel_attempts_total{channel="email",outcome="permanent"} 1)"));
  EXPECT_TRUE(has_line(out, R"(herald_spend_total{provider="twilio"} 0.0158)"));
  EXPECT_EQ(out.find(R"(herald_spend_total{provider="mail"})"), std::string::npos);
  EXPECT_TRUE(has_line(out, R"(herald_alert_firing{alert="sms_failures"} 0)"));
  EXPECT_TRUE(has_line(out, R"(herald_alert_firing{alert="dead \"letters\""} 1)"));
  m.alert("sms_failures", true);
  EXPECT_TRUE(has_line(m.render(EngineStats{}, MetricsGauges{}), R"(herald_alert_firing{alert="sms_failures"} 1)"));
}

TEST(Metrics, AttemptsPerMinuteForTheLastHourFollowTheClock) {
  // 10:00:30 UTC on some day: minute boundaries are whole minutes of the clock.
  constexpr std::int64_t t0_us = 1'795'000'000'000'000 - 1'795'000'000'000'000 % 60'000'000 + 30'000'000;
  auto clock = std::make_shared<ManualClock>(t0_us);
  Metrics m(clock);
  m.attempt("sms", OutcomeKind::accepted);
  m.attempt("sms", OutcomeKind::retryable);
  m.attempt("mail", OutcomeKind::permanent);
  clock->advance(std::chrono::seconds(60));  // the next minute
  m.attempt("sms", OutcomeKind::accepted);
  m.attempt("sms", OutcomeKind::recipient_invalid);  // every outcome but accepted is a failure
  LastHour h = m.last_hour(clock->now_ms());
  EXPECT_EQ(h.start_ms, (t0_us / 1000 / 60'000 + 1 - 59) * 60'000);
  EXPECT_EQ(h.total[58].accepted, 1u);
  EXPECT_EQ(h.total[58].failed, 2u);
  EXPECT_EQ(h.total[59].accepted, 1u);
  EXPECT_EQ(h.total[59].failed, 1u);
  std::uint64_t before = 0;
  for (std::size_t i = 0; i < 58; ++i) before += h.total[i].accepted + h.total[i].failed;
  EXPECT_EQ(before, 0u);
  ASSERT_EQ(h.providers.size(), 2u);
  EXPECT_EQ(h.providers[0].first, "mail");  // by name
  EXPECT_EQ(h.providers[0].second[58].failed, 1u);
  EXPECT_EQ(h.providers[1].second[58].accepted, 1u);
  EXPECT_EQ(h.providers[1].second[59].failed, 1u);

  // 58 minutes on, the first minute is the oldest of the hour; one more and it is gone.
  clock->advance(std::chrono::minutes(58));
  h = m.last_hour(clock->now_ms());
  EXPECT_EQ(h.total[0].failed, 2u);
  EXPECT_EQ(h.total[1].accepted, 1u);
  clock->advance(std::chrono::minutes(1));
  h = m.last_hour(clock->now_ms());
  EXPECT_EQ(h.total[0].accepted, 1u);
  EXPECT_EQ(h.total[0].failed, 1u);
  // A slot reused an hour later starts from zero rather than adding to the old minute.
  m.attempt("sms", OutcomeKind::accepted);
  h = m.last_hour(clock->now_ms());
  EXPECT_EQ(h.total[59].accepted, 1u);
  EXPECT_EQ(h.total[59].failed, 0u);
}

TEST(Metrics, MinuteRingDropsAnAnswerOlderThanItsHour) {
  MinuteRing r;
  r.add(1000, true);
  r.add(1000 - 60, false);  // the same slot an hour before: a clock set back; not counted
  const LastHour::Series w = r.window(1000);
  EXPECT_EQ(w[59].accepted, 1u);
  EXPECT_EQ(w[59].failed, 0u);
  EXPECT_EQ(r.window(1060)[59].accepted, 0u);  // an hour on, the slot is another minute's
}

TEST(Metrics, FinalStatesAttemptsAndSuppressionsByLabel) {
  Metrics m;
  m.final_state("otp", Priority::critical, State::completed);
  m.final_state("otp", Priority::critical, State::completed);
  m.final_state("otp", Priority::bulk, State::dead_lettered);
  m.attempt("twilio", OutcomeKind::accepted);
  m.attempt("twilio", OutcomeKind::retryable);
  m.attempt("twilio", OutcomeKind::retryable);
  m.request("twilio", milliseconds{30});
  m.accepted(Priority::critical, milliseconds{4});
  m.suppression("sms", "opted_out");
  EngineStats c;
  c.received = 3;
  MetricsGauges g;
  g.ready[static_cast<std::size_t>(Priority::bulk)] = 7;
  g.provider_in_flight.emplace_back("twilio", 2);
  const std::string out = m.render(c, g);
  EXPECT_TRUE(has_line(out, R"(herald_notifications_final_total{type="otp",priority="critical",state="completed"} 2)")) << out;
  EXPECT_TRUE(has_line(out, R"(herald_notifications_final_total{type="otp",priority="bulk",state="dead_lettered"} 1)"));
  EXPECT_EQ(out.find(R"(state="expired")"), std::string::npos);  // counts of zero are left out
  EXPECT_TRUE(has_line(out, R"(herald_attempts_total{provider="twilio",outcome="retryable"} 2)"));
  EXPECT_TRUE(has_line(out, R"(herald_provider_request_seconds_count{provider="twilio"} 1)"));
  EXPECT_TRUE(has_line(out, R"(herald_accept_latency_seconds_bucket{priority="critical",le="0.005"} 1)"));
  EXPECT_TRUE(has_line(out, R"(herald_accept_latency_seconds_count{priority="normal"} 0)"));
  EXPECT_TRUE(has_line(out, R"(herald_queue_depth{lane="bulk",where="lane"} 7)"));
  EXPECT_TRUE(has_line(out, R"(herald_provider_in_flight{provider="twilio"} 2)"));
  EXPECT_TRUE(has_line(out, R"(herald_suppressions_added_total{channel="sms",reason="opted_out"} 1)"));
  EXPECT_TRUE(has_line(out, "herald_notifications_received_total 3"));
  EXPECT_TRUE(has_line(out, "# TYPE herald_alert_firing gauge"));
  EXPECT_TRUE(has_line(out, "# TYPE herald_attempts_total counter"));
  EXPECT_TRUE(has_line(out, "# TYPE herald_queue_depth gauge"));
}

TEST(Metrics, LabelValuesAreEscaped) {
  EXPECT_EQ(prometheus_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  Metrics m;
  m.final_state("we\"ird", Priority::normal, State::completed);
  const std::string out = m.render({}, {});
  EXPECT_TRUE(has_line(out, R"(herald_notifications_final_total{type="we\"ird",priority="normal",state="completed"} 1)"));
}

}  // namespace
}  // namespace herald
