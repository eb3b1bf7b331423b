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
