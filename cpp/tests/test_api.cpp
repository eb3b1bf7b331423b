// The API of herald serve without sockets: routes, JSON to notifications with the binding's
// checks and texts, answers with ids as strings, errors to statuses, and the key check.
#include <gtest/gtest.h>

#include <string>

#include "herald/api.hpp"
#include "herald/crypto.hpp"
#include "herald/errors.hpp"

namespace herald::api {
namespace {

using json = nlohmann::json;

std::string field_of(const json& j, const std::string& prefix = {}) {
  try {
    (void)decode_notification(j, prefix);
  } catch (const ValidationError& e) {
    return e.field() + " | " + e.what();
  }
  return "accepted";
}

TEST(ApiRoute, NamesEveryEndpoint) {
  EXPECT_EQ(route("POST", "/v1/notifications", "").action, Action::send);
  EXPECT_EQ(route("POST", "/v1/notifications:batch", "").action, Action::send_many);
  const Route s = route("GET", "/v1/notifications/9223372036854775807", "");
  EXPECT_EQ(s.action, Action::status);
  EXPECT_EQ(s.id, 9223372036854775807);
  EXPECT_EQ(route("GET", "/v1/notifications/12/trace", "").action, Action::trace);
  EXPECT_EQ(route("POST", "/v1/notifications/12/retry", "").action, Action::retry);
  EXPECT_EQ(route("POST", "/v1/notifications/12/cancel", "").action, Action::cancel);
  EXPECT_EQ(route("GET", "/v1/dead-letters", "limit=5").limit, 5u);
  EXPECT_EQ(route("GET", "/v1/suppressions", "").action, Action::suppressions);
  const Route u = route("DELETE", "/v1/suppressions/email/a%40b.example", "");
  EXPECT_EQ(u.action, Action::unsuppress);
  EXPECT_EQ(u.channel, "email");
  EXPECT_EQ(u.address, "a@b.example");
  EXPECT_EQ(route("GET", "/health", "").action, Action::health);
  EXPECT_EQ(route("GET", "/ready", "").action, Action::ready);
}

TEST(ApiRoute, RefusesWhatIsNotAnEndpoint) {
  EXPECT_EQ(route("PUT", "/v1/notifications", "").action, Action::bad_method);
  // GET lists one recipient's notifications; the recipient is required.
  const Route by = route("GET", "/v1/notifications", "recipient=ada%40example.com&limit=3");
  EXPECT_EQ(by.action, Action::by_recipient);
  EXPECT_EQ(by.recipient, "ada@example.com");
  EXPECT_EQ(by.limit, 3u);
  EXPECT_THROW((void)route("GET", "/v1/notifications", ""), ValidationError);
  EXPECT_THROW((void)route("GET", "/v1/notifications", "recipient="), ValidationError);
  EXPECT_EQ(route("GET", "/v1/dashboard", "").action, Action::dashboard);
  EXPECT_EQ(route("GET", "/dashboard", "").action, Action::dashboard_page);
  EXPECT_FALSE(needs_key(Action::dashboard_page));
  EXPECT_TRUE(needs_key(Action::dashboard));
  EXPECT_EQ(route("DELETE", "/v1/notifications/1", "").action, Action::bad_method);
  EXPECT_EQ(route("GET", "/v1/notifications/12/other", "").action, Action::not_found);
  EXPECT_EQ(route("GET", "/v2/notifications", "").action, Action::not_found);
  EXPECT_EQ(route("GET", "/v1/notifications/-1", "").action, Action::bad_id);
  EXPECT_EQ(route("GET", "/v1/notifications/9223372036854775808", "").action, Action::bad_id);
  EXPECT_EQ(route("GET", "/v1/notifications/1x", "").action, Action::bad_id);
  EXPECT_THROW((void)route("GET", "/v1/dead-letters", "limit=0"), ValidationError);
  EXPECT_FALSE(needs_key(Action::health));
  EXPECT_FALSE(needs_key(Action::ready));
  EXPECT_TRUE(needs_key(Action::send));
}

TEST(ApiDecode, BuildsTheNotificationThePythonApiWould) {
  const Notification n = decode_notification(json::parse(
      R"({"type":"otp","recipient":{"id":"u1","phone":"+1555"},"data":{"code":"1"},"priority":"critical",)"
      R"("idempotency_key":"k","send_at":1700000000.5,"expires_at":null,"tenant":""})"));
  EXPECT_EQ(n.type, "otp");
  EXPECT_EQ(n.tenant, "default");
  EXPECT_EQ(n.recipient_id, "u1");
  EXPECT_EQ(json::parse(n.recipient_json)["phone"], "+1555");
  EXPECT_EQ(n.data_json, R"({"code":"1"})");
  EXPECT_EQ(n.priority, Priority::critical);
  EXPECT_EQ(n.idempotency_key, "k");
  EXPECT_EQ(n.send_at_ms, 1'700'000'000'500);
  EXPECT_EQ(n.expires_at_ms, 0);
  const Notification plain = decode_notification(json::parse(R"({"type":"otp","recipient":"u2"})"));
  EXPECT_EQ(plain.recipient_json, R"({"id":"u2"})");
}

TEST(ApiDecode, NamesTheFieldWithTheBindingsWords) {
  EXPECT_EQ(field_of(json::parse(R"({"recipient":"u"})")), "type | type: is required");
  EXPECT_EQ(field_of(json::parse(R"({"type":1,"recipient":"u"})")), "type | type: must be a string (got int)");
  EXPECT_EQ(field_of(json::parse(R"({"type":"t","recipient":"u","colour":1})")), "colour | colour: unknown field");
  EXPECT_EQ(field_of(json::parse(R"({"type":"t","recipient":{}})")), "recipient.id | recipient.id: is required");
  EXPECT_EQ(field_of(json::parse(R"({"type":"t","recipient":[1]})")),
            "recipient | recipient: must be a user id (str) or a dict with an 'id'");
  EXPECT_EQ(field_of(json::parse(R"({"type":"t","recipient":"u","data":[]})")), "data | data: must be a dict");
  EXPECT_EQ(field_of(json::parse(R"({"type":"t","recipient":"u","priority":"urgent"})")),
            "priority | priority: must be one of critical, high, normal, bulk (got 'urgent')");
  EXPECT_EQ(field_of(json::parse(R"({"type":"t","recipient":"u","send_at":true})")),
            "send_at | send_at: must be a datetime, a timedelta or epoch seconds (got bool)");
  EXPECT_EQ(field_of(json::parse(R"({"type":"t","recipient":"u","send_at":-1})")),
            "send_at | send_at: must be a time from 1970-01-01 to 9999-12-31: epoch seconds from 0 to 253402300799 (got -1)");
  EXPECT_EQ(field_of(json::parse(R"({"type":"t","recipient":"u","data":{"n":18446744073709551615}})")),
            "data.n | data.n: must be an integer from -9223372036854775808 to 9223372036854775807 (got 18446744073709551615)");
  EXPECT_EQ(field_of(json::parse("[]"), "notifications[2]."), "notifications[2] | notifications[2]: must be a dict");
  // Wider than 64 bits: refused with its digits, not rounded to a double and accepted.
  EXPECT_EQ(field_of(parse_body(R"({"type":"t","recipient":"u","data":{"a":[1,18446744073709551616]}})")),
            "data.a[1] | data.a[1]: must be an integer from -9223372036854775808 to 9223372036854775807 "
            "(got 18446744073709551616)");
  EXPECT_EQ(field_of(parse_body(R"({"type":"t","recipient":"u","send_at":-99999999999999999999})")),
            "send_at | send_at: must be a time from 1970-01-01 to 9999-12-31: epoch seconds from 0 to 253402300799 "
            "(got -99999999999999999999)");
  EXPECT_EQ(field_of(parse_body(R"({"type":123456789012345678901234567890,"recipient":"u"})")),
            "type | type: must be a string (got int)");
  EXPECT_EQ(parse_body(R"({"x":1.5e3})")["x"], 1500.0);
}

TEST(ApiDecode, RefusesDeepAndLargePayloads) {
  json deep = json::object();
  json* at = &deep;
  for (int i = 0; i < max_payload_depth - 1; ++i) at = &((*at)["a"] = json::object());
  EXPECT_EQ(field_of(json{{"type", "t"}, {"recipient", "u"}, {"data", deep}}), "accepted");  // 64 levels
  (*at)["a"] = json::object();
  const std::string got = field_of(json{{"type", "t"}, {"recipient", "u"}, {"data", deep}});
  EXPECT_NE(got.find("is nested deeper than 64 levels"), std::string::npos) << got;
  EXPECT_EQ(got.substr(0, 6), "data.a");
  const json big{{"type", "t"}, {"recipient", "u"}, {"data", {{"x", std::string(max_payload_bytes, 'x')}}}};
  EXPECT_EQ(field_of(big), "data | data: larger than 256 KiB");
}

TEST(ApiDecode, NamesBatchItemsAndBadBodies) {
  try {
    (void)decode_batch(json::parse(R"([{"type":"t","recipient":"u"},{"type":"t","recipient":"u","priority":5}])"));
    FAIL() << "accepted";
  } catch (const ValidationError& e) {
    EXPECT_EQ(e.field(), "notifications[1].priority");
  }
  EXPECT_THROW((void)decode_batch(json::object()), ValidationError);
  try {
    (void)parse_body("{nope");
    FAIL() << "accepted";
  } catch (const ValidationError& e) {
    EXPECT_EQ(e.field(), "body");
  }
}

TEST(ApiEncode, IdsTravelAsStrings) {
  const json r = encode(SendResult{9'007'199'254'740'993, State::queued, true});
  EXPECT_EQ(r["id"], "9007199254740993");
  EXPECT_EQ(r["state"], "queued");
  EXPECT_EQ(r["duplicate"], true);
  StoredNotification s;
  s.notification.id = 9'007'199'254'740'995;
  s.notification.type = "otp";
  s.delivery.state = State::completed;
  const json st = encode(s);
  EXPECT_EQ(st["id"], "9007199254740995");
  EXPECT_TRUE(st["provider"].is_null());
  EXPECT_TRUE(st["created_at"].is_null());
  Event e;
  e.notification_id = 42;
  e.kind = herald::EventKind::received;
  EXPECT_EQ(encode(e)["id"], "42");
  Suppression x;
  x.notification_id = 7;
  EXPECT_EQ(encode(x)["notification_id"], "7");
  EXPECT_EQ(dump(json{{"t", std::string("a\xff")}}).size() > 0, true);  // not UTF-8: replaced, not thrown
}

TEST(ApiErrors, MapToStatusesAndNamedTypes) {
  const auto v = error_for(std::make_exception_ptr(ValidationError("data.a", "bad")));
  EXPECT_EQ(v.status, 400u);
  const json body = json::parse(v.body);
  EXPECT_EQ(body["error"]["type"], "ValidationError");
  EXPECT_EQ(body["error"]["field"], "data.a");
  EXPECT_EQ(body["error"]["message"], "data.a: bad");
  EXPECT_EQ(error_for(std::make_exception_ptr(NotFound("x"))).status, 404u);
  EXPECT_EQ(error_for(std::make_exception_ptr(IdempotencyConflict("x"))).status, 409u);
  EXPECT_EQ(error_for(std::make_exception_ptr(InvalidState("x"))).status, 409u);
  EXPECT_EQ(error_for(std::make_exception_ptr(StoreError("x"))).status, 503u);
  EXPECT_EQ(error_for(std::make_exception_ptr(EngineClosed("x"))).status, 503u);
  EXPECT_EQ(json::parse(error_for(std::make_exception_ptr(std::runtime_error("x"))).body)["error"]["type"], "HeraldError");
}

TEST(ApiKeys, MissingWrongAndRight) {
  const std::vector<std::string> hashes = {crypto::hex(crypto::sha256("other")), crypto::hex(crypto::sha256("s3cret"))};
  EXPECT_EQ(check_key("", hashes), KeyCheck::missing);
  EXPECT_EQ(check_key("Basic abc", hashes), KeyCheck::missing);
  EXPECT_EQ(check_key("Bearer ", hashes), KeyCheck::missing);
  EXPECT_EQ(check_key("Bearer nope", hashes), KeyCheck::wrong);
  EXPECT_EQ(check_key("Bearer s3cret", hashes), KeyCheck::ok);
  EXPECT_EQ(check_key("Bearer s3cret", {}), KeyCheck::wrong);
}

}  // namespace
}  // namespace herald::api
