#include <gtest/gtest.h>

#include "herald/clock.hpp"
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

std::string field_of(const Notification& n, std::int64_t now = 1000) {
  try {
    validate(n, now);
  } catch (const ValidationError& e) {
    return e.field();
  }
  return "";
}
}  // namespace

TEST(Validate, AcceptsAMinimalNotification) { EXPECT_EQ(field_of(valid()), ""); }

TEST(Validate, NamesTheFieldAndTheReason) {
  auto n = valid();
  n.type = "";
  EXPECT_EQ(field_of(n), "type");
  n = valid();
  n.type = "has space";
  EXPECT_EQ(field_of(n), "type");
  n = valid();
  n.recipient_id = "";
  EXPECT_EQ(field_of(n), "recipient.id");
  n = valid();
  n.data_json = "[1]";
  EXPECT_EQ(field_of(n), "data");
  n = valid();
  n.idempotency_key = std::string(300, 'k');
  EXPECT_EQ(field_of(n), "idempotency_key");
  n = valid();
  n.expires_at_ms = 500;
  EXPECT_EQ(field_of(n, 1000), "expires_at");
  n = valid();
  n.send_at_ms = 5000;
  n.expires_at_ms = 4000;
  EXPECT_EQ(field_of(n, 1000), "expires_at");
  try {
    auto bad = valid();
    bad.tenant = "";
    validate(bad, 0, "notifications[3].");
    FAIL();
  } catch (const ValidationError& e) {
    EXPECT_EQ(e.field(), "notifications[3].tenant");
    EXPECT_STREQ(e.what(), "notifications[3].tenant: is required");
  }
}

TEST(Validate, PriorityNames) {
  EXPECT_EQ(parse_priority("critical"), Priority::critical);
  EXPECT_EQ(parse_priority("bulk"), Priority::bulk);
  EXPECT_THROW((void)parse_priority("urgent"), ValidationError);
}

TEST(ContentHash, TellsRepeatsFromConflicts) {
  auto a = valid();
  auto b = valid();
  b.id = 99;             // the engine's own fields do not matter
  b.created_at_ms = 12;
  EXPECT_EQ(content_hash(a), content_hash(b));
  b.data_json = R"({"code":"2"})";
  EXPECT_NE(content_hash(a), content_hash(b));
}

TEST(IdGenerator, IncreasingAndAboveTheFloor) {
  IdGenerator g;
  const Id floor = (now_ms() + 100000) << 16;  // a store written "in the future"
  g.raise_floor(floor);
  Id prev = g.next();
  EXPECT_GT(prev, floor);
  for (int i = 0; i < 10000; ++i) {
    const Id next = g.next();
    EXPECT_GT(next, prev);
    prev = next;
  }
}
