// The FCM adapter: the OAuth JWT bearer grant (verified with OpenSSL), access token timing and
// backoff, the HTTP v1 send and every classification branch, on crafted responses (no sockets).
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "herald/clock.hpp"
#include "herald/crypto.hpp"
#include "herald/errors.hpp"
#include "herald/provider.hpp"
#include "push_test_support.hpp"

using namespace herald;
using namespace herald::push_test;
using json = nlohmann::json;

namespace {

std::string service_account(const std::string& pem, bool with_kid = true, bool with_project = true) {
  json sa = {{"type", "service_account"},
             {"client_email", "herald@proj.iam.gserviceaccount.com"},
             {"private_key", pem},
             {"token_uri", "https://oauth2.example.test/token"}};
  if (with_kid) sa["private_key_id"] = "kid-123";
  if (with_project) sa["project_id"] = "key-project";
  return sa.dump();
}

ProviderConfig fcm_config(std::string sa = service_account(rsa_pem())) {
  ProviderConfig c;
  c.name = "push";
  c.kind = "fcm";
  c.url = "http://127.0.0.1:8025/";
  c.secrets["service_account"] = std::move(sa);
  return c;
}

/// An FCM adapter holding a one-hour access token obtained at `t0`.
std::unique_ptr<Adapter> fcm_with_token(std::int64_t t0, const ProviderConfig& c = fcm_config()) {
  auto a = make_adapter(c);
  auto req = a->token_request(t0);
  EXPECT_TRUE(req.has_value());
  a->on_token_response(answer(200, R"({"access_token":"ya29.first","expires_in":3600,"token_type":"Bearer"})"), t0);
  EXPECT_TRUE(a->ready(t0));
  return a;
}

TEST(FcmAdapter, ConfigErrorsNameTheFieldAndNeverTheKey) {
  ProviderConfig none = fcm_config();
  none.secrets.clear();
  EXPECT_EQ(config_error_of(none), "providers.push.secrets.service_account: is required");

  ProviderConfig bad = fcm_config("{not json SECRET-MATERIAL");
  const std::string bad_error = config_error_of(bad);
  EXPECT_EQ(bad_error.rfind("providers.push.secrets.service_account: ", 0), 0u) << bad_error;
  EXPECT_EQ(bad_error.find("SECRET-MATERIAL"), std::string::npos);

  for (const char* field : {"client_email", "private_key"}) {
    json sa = json::parse(service_account(rsa_pem()));
    sa.erase(field);
    const std::string e = config_error_of(fcm_config(sa.dump()));
    EXPECT_EQ(e, std::string("providers.push.secrets.service_account: ") + field + " is missing");
  }

  json garbage = json::parse(service_account(rsa_pem()));
  garbage["private_key"] = "-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n";
  const std::string ge = config_error_of(fcm_config(garbage.dump()));
  EXPECT_NE(ge.find("secrets.service_account: private_key"), std::string::npos) << ge;
  EXPECT_EQ(ge.find("SECRETSECRET"), std::string::npos);

  const std::string ece = config_error_of(fcm_config(service_account(ec_pem())));
  EXPECT_EQ(ece, "providers.push.secrets.service_account: private_key is not an RSA key");
  EXPECT_EQ(ece.find("PRIVATE KEY"), std::string::npos);

  const std::string np = config_error_of(fcm_config(service_account(rsa_pem(), true, false)));
  EXPECT_EQ(np.rfind("providers.push.settings.project_id: is required", 0), 0u) << np;
}

TEST(FcmAdapter, TokenUrlFollowsSettingsThenUrlThenKeyThenGoogle) {
  const std::int64_t t0 = now_ms();
  ProviderConfig c = fcm_config();
  EXPECT_EQ(make_adapter(c)->token_request(t0)->url, "http://127.0.0.1:8025/token");
  c.settings["token_url"] = "http://127.0.0.1:9/oauth";
  EXPECT_EQ(make_adapter(c)->token_request(t0)->url, "http://127.0.0.1:9/oauth");
  c.settings.clear();
  c.url.clear();
  EXPECT_EQ(make_adapter(c)->token_request(t0)->url, "https://oauth2.example.test/token");
  json sa = json::parse(service_account(rsa_pem()));
  sa.erase("token_uri");
  EXPECT_EQ(make_adapter(fcm_config(sa.dump()))->token_request(t0)->url.rfind("http://127.0.0.1:8025", 0), 0u);
  c.secrets["service_account"] = sa.dump();
  EXPECT_EQ(make_adapter(c)->token_request(t0)->url, "https://oauth2.googleapis.com/token");
}

TEST(FcmAdapter, TokenRequestIsASignedJwtBearerGrant) {
  const std::int64_t t0 = 1'700'000'000'123;
  auto a = make_adapter(fcm_config());
  auto req = a->token_request(t0);
  ASSERT_TRUE(req.has_value());
  EXPECT_EQ(req->method, "POST");
  EXPECT_EQ(header_of(*req, "content-type"), "application/x-www-form-urlencoded");
  const std::string prefix = "grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=";
  ASSERT_EQ(req->body.rfind(prefix, 0), 0u) << req->body;
  const auto form = crypto::form_decode(req->body);
  ASSERT_EQ(form.size(), 2u);
  EXPECT_EQ(form[0].second, "urn:ietf:params:oauth:grant-type:jwt-bearer");
  const Jwt jwt = split_jwt(form[1].second);
  EXPECT_EQ(jwt.header, json::parse(R"({"alg":"RS256","typ":"JWT","kid":"kid-123"})"));
  EXPECT_EQ(jwt.claims["iss"], "herald@proj.iam.gserviceaccount.com");
  EXPECT_EQ(jwt.claims["scope"], "https://www.googleapis.com/auth/firebase.messaging");
  EXPECT_EQ(jwt.claims["aud"], "http://127.0.0.1:8025/token");
  EXPECT_EQ(jwt.claims["iat"], 1'700'000'000);
  EXPECT_EQ(jwt.claims["exp"], 1'700'003'600);
  EXPECT_EQ(jwt.signature.size(), 256u);  // RSA-2048
  EXPECT_TRUE(verify_with_public_key(rsa_pem(), jwt.signing_input, jwt.signature));
  std::string tampered = jwt.signing_input;
  tampered.back() = tampered.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(verify_with_public_key(rsa_pem(), tampered, jwt.signature));

  // Without private_key_id there is no "kid".
  auto b = make_adapter(fcm_config(service_account(rsa_pem(), false)));
  const Jwt plain = split_jwt(crypto::form_decode(b->token_request(t0)->body)[1].second);
  EXPECT_EQ(plain.header, json::parse(R"({"alg":"RS256","typ":"JWT"})"));
}

TEST(FcmAdapter, TokenIsRequestedOnceThenRefreshedFiveMinutesBeforeExpiry) {
  const std::int64_t t0 = 1'700'000'000'000;
  auto a = make_adapter(fcm_config());
  EXPECT_FALSE(a->ready(t0));
  ASSERT_TRUE(a->token_request(t0).has_value());
  EXPECT_FALSE(a->token_request(t0).has_value()) << "one request pending at a time";
  EXPECT_FALSE(a->token_request(t0 + 10 * minute).has_value());
  a->on_token_response(answer(200, R"({"access_token":"ya29.first","expires_in":3600})"), t0);
  EXPECT_TRUE(a->ready(t0));
  EXPECT_FALSE(a->token_request(t0 + minute).has_value());
  EXPECT_FALSE(a->token_request(t0 + 55 * minute - 1).has_value());
  ASSERT_TRUE(a->token_request(t0 + 55 * minute).has_value());
  EXPECT_FALSE(a->token_request(t0 + 55 * minute).has_value());
  EXPECT_TRUE(a->ready(t0 + 55 * minute)) << "the old token serves while its successor is minted";
  a->on_token_response(answer(200, R"({"access_token":"ya29.second","expires_in":3600})"), t0 + 56 * minute);
  EXPECT_TRUE(a->ready(t0 + 70 * minute));
  EXPECT_FALSE(a->token_request(t0 + 70 * minute).has_value());
  Send s;
  s.n.id = 7;
  EXPECT_EQ(header_of(a->build(s.ctx(t0 + 70 * minute)), "authorization"), "Bearer ya29.second");
  EXPECT_FALSE(a->ready(t0 + 116 * minute));
}

TEST(FcmAdapter, ShortLivedTokensAreRefreshedAfterEightyPercentOfTheirLife) {
  const std::int64_t t0 = 1'700'000'000'000;
  auto a = make_adapter(fcm_config());
  ASSERT_TRUE(a->token_request(t0).has_value());
  a->on_token_response(answer(200, R"({"access_token":"short","expires_in":60})"), t0);
  EXPECT_TRUE(a->ready(t0));
  EXPECT_FALSE(a->token_request(t0 + 47'999).has_value());
  EXPECT_TRUE(a->token_request(t0 + 48'000).has_value());
}

TEST(FcmAdapter, FailedTokenRequestsBackOffFromOneSecondToOneMinute) {
  const std::int64_t t0 = 1'700'000'000'000;
  auto a = make_adapter(fcm_config());
  ASSERT_TRUE(a->token_request(t0).has_value());
  a->on_token_response(answer(400, R"({"error":"invalid_grant"})"), t0);
  EXPECT_FALSE(a->ready(t0));
  EXPECT_FALSE(a->token_request(t0 + 999).has_value());
  ASSERT_TRUE(a->token_request(t0 + 1000).has_value());
  a->on_token_response(answer(0), t0 + 1000);  // transport failure
  EXPECT_FALSE(a->token_request(t0 + 2999).has_value());
  ASSERT_TRUE(a->token_request(t0 + 3000).has_value());
  // 200 without a usable token is a failure too.
  a->on_token_response(answer(200, R"({"token_type":"Bearer"})"), t0 + 3000);
  EXPECT_FALSE(a->ready(t0 + 3000));
  EXPECT_FALSE(a->token_request(t0 + 6999).has_value());
  std::int64_t t = t0 + 7000;
  ASSERT_TRUE(a->token_request(t).has_value());
  for (int i = 0; i < 10; ++i) {  // 8 s, 16 s, ... capped at 60 s
    a->on_token_response(answer(503), t);
    const std::int64_t expected = std::min<std::int64_t>(8000LL << i, 60'000);
    EXPECT_FALSE(a->token_request(t + expected - 1).has_value()) << i;
    t += expected;
    ASSERT_TRUE(a->token_request(t).has_value()) << i;
  }
  a->on_token_response(answer(200, R"({"access_token":"ya29.ok","expires_in":3600})"), t);
  EXPECT_TRUE(a->ready(t));
}

TEST(FcmAdapter, FailedRefreshKeepsTheCurrentTokenUntilItExpires) {
  const std::int64_t t0 = 1'700'000'000'000;
  auto a = fcm_with_token(t0);
  const std::int64_t t1 = t0 + 55 * minute;
  ASSERT_TRUE(a->token_request(t1).has_value());
  a->on_token_response(answer(500), t1);
  EXPECT_TRUE(a->ready(t1));
  EXPECT_FALSE(a->token_request(t1 + 999).has_value());
  EXPECT_TRUE(a->token_request(t1 + 1000).has_value());
  EXPECT_FALSE(a->ready(t0 + 60 * minute));
}

TEST(FcmAdapter, BuildsAnHttpV1Send) {
  const std::int64_t t0 = now_ms();
  ProviderConfig c = fcm_config();
  c.settings["project_id"] = "settings-project";
  auto a = fcm_with_token(t0, c);
  Send s;
  s.n.id = 4242;
  s.n.recipient_json = R"({"id":"u1","fcm_token":"tok-abc"})";
  s.n.data_json = R"({"title":"Sign-in \"code\"","x":1})";
  const http::Request req = a->build(s.ctx(t0));
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.url, "http://127.0.0.1:8025/v1/projects/settings-project/messages:send");
  EXPECT_EQ(header_of(req, "authorization"), "Bearer ya29.first");
  EXPECT_EQ(header_of(req, "content-type"), "application/json");
  EXPECT_EQ(header_of(req, "idempotency-key"), "herald-4242");
  const json body = json::parse(req.body);
  EXPECT_EQ(body, json::parse(R"({"message":{"token":"tok-abc",
      "notification":{"title":"Sign-in \"code\"","body":"Your code is 1234"},
      "data":{"herald_id":"4242"}}})"));
  EXPECT_EQ(a->address(s.n), "tok-abc");

  // The key's project when settings name none; no title unless data.title is a string; a TTL
  // from expires_at.
  auto b = fcm_with_token(t0);
  s.n.data_json = R"({"title":5})";
  s.n.expires_at_ms = t0 + 29'500;
  const json b_body = json::parse(b->build(s.ctx(t0)).body);
  EXPECT_EQ(b->build(s.ctx(t0)).url, "http://127.0.0.1:8025/v1/projects/key-project/messages:send");
  EXPECT_FALSE(b_body["message"]["notification"].contains("title"));
  EXPECT_EQ(b_body["message"]["android"]["ttl"], "30s");
  s.n.expires_at_ms = t0 - 1;
  EXPECT_EQ(json::parse(b->build(s.ctx(t0)).body)["message"]["android"]["ttl"], "0s");
  EXPECT_EQ(b_body["message"]["apns"]["headers"]["apns-expiration"], std::to_string((t0 + 29'500) / 1000));

  // The real service by default.
  ProviderConfig real = fcm_config();
  real.url.clear();
  EXPECT_EQ(make_adapter(real)->build(s.ctx(t0)).url,
            "https://fcm.googleapis.com/v1/projects/key-project/messages:send");
}

// A step's content: the title (over data.title), notification.image (and mutable-content for
// Apple devices, whose notification service extension shows it), the step's data templates
// rendered as FCM's string data beside herald_id.
TEST(FcmAdapter, RendersTheStepsTitleImageAndData) {
  const std::int64_t t0 = now_ms();
  auto a = fcm_with_token(t0);
  Send s;
  s.n.id = 7;
  s.n.recipient_json = R"({"fcm_token":"tok-abc"})";
  s.n.data_json = R"({"title":"old","name":"Ada","order":{"id":42}})";
  s.plan.content.title = "Hi {name}";
  s.plan.content.image = "https://img.example.test/{order.id}.png";
  s.plan.content.data_json = R"({"order_id":"{order.id}","screen":"orders","herald_id":"x"})";
  const json body = json::parse(a->build(s.ctx(t0)).body);
  EXPECT_EQ(body, json::parse(R"({"message":{"token":"tok-abc",
      "notification":{"title":"Hi Ada","body":"Your code is 1234","image":"https://img.example.test/42.png"},
      "data":{"order_id":"42","screen":"orders","herald_id":"7"},
      "apns":{"payload":{"aps":{"mutable-content":1}}}}})"));

  // With an expiry both travel in the one apns object.
  s.n.expires_at_ms = t0 + 60'000;
  const json timed = json::parse(a->build(s.ctx(t0)).body);
  EXPECT_EQ(timed["message"]["apns"]["payload"]["aps"]["mutable-content"], 1);
  EXPECT_EQ(timed["message"]["apns"]["headers"]["apns-expiration"], std::to_string((t0 + 60'000) / 1000));

  // A variable with neither a value nor a default: no request, the reason named.
  s.plan.content.data_json = R"({"coupon":"{coupon}"})";
  try {
    (void)a->build(s.ctx(t0));
    ADD_FAILURE() << "built a push with a missing variable";
  } catch (const TemplateError& e) {
    EXPECT_STREQ(e.what(), "template: missing variable 'coupon'");
  }
}

// FCM HTTP v1: android.ttl is a duration ("3600s"); for Apple devices the expiry travels as
// apns.headers["apns-expiration"], the UNIX time in seconds as a string.
TEST(FcmAdapter, ExpiresAtReachesAndroidAndAppleDevices) {
  const std::int64_t t0 = 1'700'000'000'200;
  auto a = fcm_with_token(t0);
  Send s;
  s.n.id = 77;
  s.n.recipient_json = R"({"fcm_token":"tok-ios"})";
  s.n.expires_at_ms = 1'700'003'600'700;  // 3600.5 s from now
  const json body = json::parse(a->build(s.ctx(t0)).body);
  EXPECT_EQ(body, json::parse(R"({"message":{"token":"tok-ios",
      "notification":{"body":"Your code is 1234"},
      "data":{"herald_id":"77"},
      "android":{"ttl":"3601s"},
      "apns":{"headers":{"apns-expiration":"1700003600"}}}})"));
  EXPECT_TRUE(body["message"]["apns"]["headers"]["apns-expiration"].is_string());

  // Already past: Android gets "0s" (now or never), Apple the past expiry (never stored).
  s.n.expires_at_ms = t0 - 5'000;
  const json late = json::parse(a->build(s.ctx(t0)).body);
  EXPECT_EQ(late["message"]["android"], json::parse(R"({"ttl":"0s"})"));
  EXPECT_EQ(late["message"]["apns"], json::parse(R"({"headers":{"apns-expiration":"1699999995"}})"));

  // Without expires_at neither block: FCM's and APNs's own defaults (store and retry) apply.
  s.n.expires_at_ms = 0;
  const json open = json::parse(a->build(s.ctx(t0)).body);
  EXPECT_FALSE(open["message"].contains("android"));
  EXPECT_FALSE(open["message"].contains("apns"));
}

std::string fcm_error(int code, const char* status, const char* message, const char* error_code = nullptr) {
  json e = {{"error", {{"code", code}, {"message", message}, {"status", status}}}};
  if (error_code != nullptr) {
    e["error"]["details"] = json::array(
        {{{"@type", "type.googleapis.com/google.firebase.fcm.v1.FcmError"}, {"errorCode", error_code}}});
  }
  return e.dump();
}

TEST(FcmAdapter, ClassifiesEveryFcmAnswer) {
  auto a = fcm_with_token(now_ms());
  auto ok = a->classify(answer(200, R"({"name":"projects/p/messages/0:1500415314455276%31bd1c9631bd1c96"})"));
  EXPECT_EQ(ok.kind, OutcomeKind::accepted);
  EXPECT_EQ(ok.provider_message_id, "projects/p/messages/0:1500415314455276%31bd1c9631bd1c96");

  auto unreg = a->classify(answer(404, fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")));
  EXPECT_EQ(unreg.kind, OutcomeKind::recipient_invalid);
  EXPECT_NE(unreg.error.find("UNREGISTERED"), std::string::npos) << unreg.error;

  auto arg = a->classify(answer(400, fcm_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.android.ttl'",
                                               "INVALID_ARGUMENT")));
  EXPECT_EQ(arg.kind, OutcomeKind::permanent);
  EXPECT_EQ(arg.error.rfind("HTTP 400: INVALID_ARGUMENT", 0), 0u) << arg.error;

  auto bad_token = a->classify(answer(
      400, fcm_error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token",
                     "INVALID_ARGUMENT")));
  EXPECT_EQ(bad_token.kind, OutcomeKind::recipient_invalid);
  // errorCode absent: the canonical status decides.
  EXPECT_EQ(a->classify(answer(400, fcm_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."))).kind,
            OutcomeKind::permanent);

  EXPECT_EQ(a->classify(answer(403, fcm_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"))).kind,
            OutcomeKind::permanent);

  auto quota = a->classify(answer(429, fcm_error(429, "RESOURCE_EXHAUSTED", "quota", "QUOTA_EXCEEDED"),
                                  {{"retry-after", "7"}}));
  EXPECT_EQ(quota.kind, OutcomeKind::retryable);
  EXPECT_EQ(quota.retry_after_ms, 7000);
  auto unavailable = a->classify(answer(503, fcm_error(503, "UNAVAILABLE", "busy", "UNAVAILABLE")));
  EXPECT_EQ(unavailable.kind, OutcomeKind::retryable);
  EXPECT_EQ(unavailable.retry_after_ms, -1);
  EXPECT_EQ(a->classify(answer(500, fcm_error(500, "INTERNAL", "oops", "INTERNAL"))).kind, OutcomeKind::retryable);
  EXPECT_EQ(a->classify(answer(502, "<html>bad gateway</html>")).kind, OutcomeKind::retryable);
  EXPECT_EQ(a->classify(answer(404, "not json")).kind, OutcomeKind::permanent);

  http::Response down;
  down.transport_error = "Connection refused";
  EXPECT_EQ(a->classify(down).kind, OutcomeKind::retryable);
  EXPECT_TRUE(a->ready(now_ms())) << "no answer says nothing about the token";
}

TEST(FcmAdapter, UnauthorizedDropsTheAccessTokenSoANewOneIsMinted) {
  for (const auto& resp : {answer(401, fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")),
                           answer(401, fcm_error(401, "UNAUTHENTICATED", "auth", "THIRD_PARTY_AUTH_ERROR")),
                           answer(401, "")}) {
    const std::int64_t t0 = now_ms() - 1000;
    auto a = fcm_with_token(t0);
    EXPECT_FALSE(a->token_request(t0 + 1000).has_value());
    auto o = a->classify(resp);
    EXPECT_EQ(o.kind, OutcomeKind::retryable);
    EXPECT_FALSE(a->ready(t0 + 1000));
    auto req = a->token_request(t0 + 1000);
    ASSERT_TRUE(req.has_value());
    a->on_token_response(answer(200, R"({"access_token":"ya29.fresh","expires_in":3600})"), t0 + 1000);
    Send s;
    EXPECT_EQ(header_of(a->build(s.ctx(t0 + 1000)), "authorization"), "Bearer ya29.fresh");
  }
}

TEST(FcmAdapter, UnauthorizedForARequestSentBeforeTheTokenKeepsIt) {
  const std::int64_t t0 = now_ms() - 1000;
  auto a = fcm_with_token(t0);
  http::Response stale = answer(401, fcm_error(401, "UNAUTHENTICATED", "expired"));
  stale.latency = std::chrono::minutes(5);  // sent five minutes ago: with the previous token
  EXPECT_EQ(a->classify(stale).kind, OutcomeKind::retryable);
  EXPECT_TRUE(a->ready(t0 + 1000));
  EXPECT_FALSE(a->token_request(t0 + 1000).has_value());
}

}  // namespace
