#include <gtest/gtest.h>

#include <cstdio>
#include <limits>
#include <string>

#include <nlohmann/json.hpp>

#include "herald/delivery_log.hpp"
#include "herald/event.hpp"

namespace herald {
namespace {

TEST(DeliveryLogSchema, AFailedAttemptCarriesWhatAnalysisNeeds) {
  Event e;
  e.notification_id = 7'300'000'000'000'000'123;  // past 2^53
  e.seq = 42;
  e.ts_us = 1'790'000'000'123'456;
  e.kind = herald::EventKind::attempt_failed;
  e.attempt = 2;
  e.provider = "twilio";
  e.latency_us = 1500;
  e.http_status = 429;
  e.detail = "HTTP 429: 20429";
  e.error_class = ErrorClass::rate_limited;
  e.type = "otp";
  e.tenant = "acme";
  e.priority = Priority::critical;
  e.recipient_id = "u\"1";
  e.channel = "sms";
  const auto j = nlohmann::json::parse(DeliveryLog::to_json_line(e));
  EXPECT_EQ(j["v"], log_schema_version);
  EXPECT_EQ(j["id"], "7300000000000000123");  // a string: every digit survives any JSON reader
  EXPECT_EQ(j["ts_us"], 1'790'000'000'123'456);
  EXPECT_EQ(j["event"], "attempt_failed");
  EXPECT_EQ(j["recipient"], "u\"1");
  EXPECT_EQ(j["channel"], "sms");
  EXPECT_EQ(j["error_class"], "rate_limited");
  EXPECT_EQ(j["http_status"], 429);
  EXPECT_EQ(j["latency_us"], 1500);
  EXPECT_EQ(j["priority"], "critical");
  EXPECT_FALSE(j.contains("cost"));
}

TEST(DeliveryLogSchema, OptionalFieldsAreLeftOutAndCostIsANumber) {
  Event e;
  e.notification_id = 1;
  e.kind = herald::EventKind::accepted;
  e.cost = 0.0075;
  const auto j = nlohmann::json::parse(DeliveryLog::to_json_line(e));
  EXPECT_DOUBLE_EQ(j["cost"].get<double>(), 0.0075);
  for (const char* absent : {"recipient", "channel", "error_class", "provider", "latency_us", "http_status", "detail",
                             "provider_code", "segments", "alert"}) {
    EXPECT_FALSE(j.contains(absent)) << absent;
  }
}

TEST(DeliveryLogSchema, ProviderCodeSegmentsAndAlertAreOptionalFieldsOfVersionOne) {
  Event failed;
  failed.kind = EventKind::attempt_failed;
  failed.provider_code = "21211";
  failed.error_class = ErrorClass::recipient_invalid;
  auto j = nlohmann::json::parse(DeliveryLog::to_json_line(failed));
  EXPECT_EQ(j["v"], 1);  // added fields are optional: the version stays
  EXPECT_EQ(j["provider_code"], "21211");
  EXPECT_FALSE(j.contains("segments"));

  Event accepted;
  accepted.kind = EventKind::accepted;
  accepted.segments = 3;
  j = nlohmann::json::parse(DeliveryLog::to_json_line(accepted));
  EXPECT_EQ(j["segments"], 3);
  EXPECT_FALSE(j.contains("provider_code"));

  Event alert;
  alert.kind = EventKind::alert_firing;
  alert.alert = "sms \"failures\"";
  alert.detail = "failure rate 0.31 > 0.05";
  j = nlohmann::json::parse(DeliveryLog::to_json_line(alert));
  EXPECT_EQ(j["event"], "alert_firing");
  EXPECT_EQ(j["id"], "0");
  EXPECT_EQ(j["alert"], "sms \"failures\"");
  EXPECT_EQ(parse_event_kind("alert_resolved"), EventKind::alert_resolved);
}

// The line is written into room sized beforehand: every field at its longest (extreme integers,
// strings of bytes that each escape to six) must fit and read back whole, after earlier lines.
TEST(DeliveryLogSchema, AnEventWithEveryFieldAtItsLongestReadsBackWhole) {
  std::string nasty;
  for (int i = 0; i < 300; ++i) nasty += static_cast<char>(i % 0x20);  // each one "\u00XX"
  Event e;
  e.notification_id = std::numeric_limits<Id>::max();
  e.seq = std::numeric_limits<std::int64_t>::min();
  e.ts_us = std::numeric_limits<std::int64_t>::min();
  e.kind = EventKind::attempt_failed;
  e.attempt = std::numeric_limits<int>::min();
  e.step = std::numeric_limits<int>::max();
  e.error_class = ErrorClass::rate_limited;
  e.cost = 1.2345678901234e-300;
  e.latency_us = std::numeric_limits<std::int64_t>::max();
  e.http_status = std::numeric_limits<int>::min();
  e.segments = std::numeric_limits<int>::max();
  for (std::string* s : {&e.type, &e.tenant, &e.recipient_id, &e.channel, &e.provider, &e.provider_code, &e.alert,
                         &e.detail}) {
    *s = nasty;
  }
  std::string out = "earlier line\n";
  DeliveryLog::append_line(out, e);
  ASSERT_EQ(out.rfind("earlier line\n", 0), 0u);
  const auto j = nlohmann::json::parse(out.substr(13));
  EXPECT_EQ(j["id"], std::to_string(std::numeric_limits<Id>::max()));
  EXPECT_EQ(j["seq"].get<std::int64_t>(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(j["attempt"].get<int>(), std::numeric_limits<int>::min());
  EXPECT_EQ(j["latency_us"].get<std::int64_t>(), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(j["segments"].get<int>(), std::numeric_limits<int>::max());
  EXPECT_EQ(j["cost"].get<double>(), 1.234567890e-300);  // ten significant digits, as %.10g
  for (const char* key : {"type", "tenant", "recipient", "channel", "provider", "provider_code", "alert", "detail"}) {
    EXPECT_EQ(j[key].get<std::string>(), nasty) << key;
  }
}

TEST(DeliveryLogSchema, CostIsWrittenAsPrintfsTenSignificantDigits) {
  for (const double cost : {0.0, 1.0, 42.0, 9999999999.0, 1e10, 123456789012.0, 0.0075, 0.1, 2.5, 1e-7, 1.0 / 3}) {
    Event e;
    e.kind = EventKind::accepted;
    e.cost = cost;
    char want[32];
    std::snprintf(want, sizeof want, ",\"cost\":%.10g}", cost);  // the last field here
    const std::string line = DeliveryLog::to_json_line(e);
    EXPECT_TRUE(line.ends_with(want)) << want << " in " << line;
  }
}

TEST(DeliveryLogSchema, EveryErrorClassHasAName) {
  for (int i = 1; i < error_class_count; ++i) {
    const auto name = to_string(static_cast<ErrorClass>(i));
    EXPECT_FALSE(name.empty()) << i;
    EXPECT_NE(name, "unknown") << i;
  }
  EXPECT_EQ(to_string(ErrorClass::none), "");
}

}  // namespace
}  // namespace herald
