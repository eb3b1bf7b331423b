// The core's side of "bad input never crashes the process": time range, whole error texts, fields.
#include <gtest/gtest.h>

#include <string>

#include "herald/errors.hpp"
#include "herald/notification.hpp"

using namespace herald;

namespace {
Notification valid() {
  Notification n;
  n.type = "otp";
  n.recipient_id = "user-1";
  n.recipient_json = R"({"id":"user-1"})";
  return n;
}

std::string error_of(const Notification& n) {
  try {
    validate(n, 1000, "notifications[2].");
  } catch (const ValidationError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(InputLimits, TimesMustFallFrom1970To9999) {
  auto n = valid();
  n.send_at_ms = max_epoch_s * 1000 + 999;
  EXPECT_EQ(error_of(n), "");
  n.send_at_ms += 1;
  EXPECT_EQ(error_of(n), "notifications[2].send_at: must be a time from 1970-01-01 to 9999-12-31 (epoch ms " +
                             std::to_string(n.send_at_ms) + ")");
  n = valid();
  n.expires_at_ms = -1;
  EXPECT_EQ(error_of(n), "notifications[2].expires_at: must be a time from 1970-01-01 to 9999-12-31 (epoch ms -1)");
}

TEST(InputLimits, ErrorTextsKeepWhatFollowsANul) {
  auto n = valid();
  n.type = std::string("a\0b", 3);
  EXPECT_EQ(error_of(n), "notifications[2].type: may contain only letters, digits and _ - . : (got 'a\\x00b')");
  const Error twice(std::string("\0x\0", 3));
  EXPECT_STREQ(twice.what(), "\\x00x\\x00");
  EXPECT_STREQ(Error("plain").what(), "plain");
}

TEST(InputLimits, ConfigErrorsCanNameTheirField) {
  const ConfigError named("providers.sms.concurrency", "must be an integer from 1 to 10000");
  EXPECT_EQ(named.field(), "providers.sms.concurrency");
  EXPECT_STREQ(named.what(), "providers.sms.concurrency: must be an integer from 1 to 10000");
  const ConfigError text("router: is required");
  EXPECT_EQ(text.field(), "");
}

TEST(InputLimits, PayloadLimitsAreThoseDocumented) {
  EXPECT_EQ(max_payload_bytes, 256U * 1024U);
  EXPECT_EQ(max_payload_depth, 64);
  auto n = valid();
  n.data_json = "{\"a\":\"" + std::string(max_payload_bytes, 'x') + "\"}";
  EXPECT_EQ(error_of(n), "notifications[2].data: larger than 256 KiB");
}
