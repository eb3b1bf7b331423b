// The APNs adapter: its ES256 provider token (verified with OpenSSL) and its reuse, request
// shapes, expiry and every classification branch, on crafted responses (no sockets).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include <openssl/bn.h>
#include <openssl/ec.h>

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

/// JOSE r||s (64 bytes) to the DER form OpenSSL verifies.
std::string jose_to_der(const std::string& rs) {
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(rs.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(rs.data()) + 32, 32, nullptr);
  ECDSA_SIG_set0(sig, r, s);
  unsigned char* out = nullptr;
  const int len = i2d_ECDSA_SIG(sig, &out);
  std::string der(reinterpret_cast<char*>(out), static_cast<std::size_t>(len));
  OPENSSL_free(out);
  ECDSA_SIG_free(sig);
  return der;
}

ProviderConfig apns_config() {
  ProviderConfig c;
  c.name = "ios";
  c.kind = "apns";
  c.url = "http://127.0.0.1:8026";
  c.settings = {{"key_id", "ABC123DEFG"}, {"team_id", "DEF123GHIJ"}, {"topic", "com.example.app"}};
  c.secrets["private_key"] = ec_pem();
  return c;
}

std::string bearer_of(const http::Request& req) {
  const std::string auth = header_of(req, "authorization");
  EXPECT_EQ(auth.rfind("bearer ", 0), 0u) << auth;
  return auth.substr(7);
}

TEST(ApnsAdapter, ConfigErrorsNameTheFieldAndNeverTheKey) {
  for (const char* key : {"key_id", "team_id", "topic"}) {
    ProviderConfig c = apns_config();
    c.settings.erase(key);
    EXPECT_EQ(config_error_of(c), std::string("providers.ios.settings.") + key + ": is required");
  }
  ProviderConfig no_key = apns_config();
  no_key.secrets.clear();
  EXPECT_EQ(config_error_of(no_key), "providers.ios.secrets.private_key: is required");

  ProviderConfig garbage = apns_config();
  garbage.secrets["private_key"] = "-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n";
  const std::string ge = config_error_of(garbage);
  EXPECT_EQ(ge, "providers.ios.secrets.private_key: is not a PEM private key");

  ProviderConfig rsa = apns_config();
  rsa.secrets["private_key"] = rsa_pem();
  EXPECT_EQ(config_error_of(rsa), "providers.ios.secrets.private_key: is not an EC P-256 key (.p8)");

  ProviderConfig h2 = apns_config();
  h2.settings["http2"] = "maybe";
  EXPECT_EQ(config_error_of(h2), "providers.ios.settings.http2: must be tls, prior_knowledge or off");

  for (const char* bad : {"-1", "1h", "3600 ", " 3600", "1.5", "31536001", "99999999999999999999"}) {
    ProviderConfig ttl = apns_config();
    ttl.settings["default_ttl_s"] = bad;
    EXPECT_EQ(config_error_of(ttl),
              "providers.ios.settings.default_ttl_s: must be a whole number of seconds from 0 to 31536000")
        << bad;
  }
  for (const char* good : {"0", "86400", "31536000"}) {
    ProviderConfig ttl = apns_config();
    ttl.settings["default_ttl_s"] = good;
    EXPECT_EQ(config_error_of(ttl), "<no error>") << good;
  }
}

// Apple: apns-expiration is a UNIX epoch in seconds; 0 means deliver once and never store; without
// the header APNs stores the notification and tries to deliver it at least once.
TEST(ApnsAdapter, WithoutExpiresAtApnsStoresAndRetries) {
  const std::int64_t t0 = 1'700'000'000'750;
  Send s;
  s.n.id = 5;
  s.n.recipient_json = R"({"apns_token":"a1b2c3"})";
  s.n.expires_at_ms = 0;

  // No expires_at and no default: the header is left out, never "0".
  const http::Request stored = make_adapter(apns_config())->build(s.ctx(t0));
  EXPECT_EQ(header_of(stored, "apns-expiration"), "<absent>");
  for (const auto& h : stored.headers) EXPECT_NE(h.rfind("apns-expiration", 0), 0u) << h;

  // settings.default_ttl_s: now (in whole seconds) plus the lifetime.
  ProviderConfig day = apns_config();
  day.settings["default_ttl_s"] = "86400";
  auto a = make_adapter(day);
  EXPECT_EQ(header_of(a->build(s.ctx(t0)), "apns-expiration"), "1700086400");
  // expires_at wins over the default.
  s.n.expires_at_ms = 1'700'000'600'999;
  EXPECT_EQ(header_of(a->build(s.ctx(t0)), "apns-expiration"), "1700000600");

  // default_ttl_s = "0" asks for APNs's try-once, store-nothing explicitly.
  ProviderConfig once = apns_config();
  once.settings["default_ttl_s"] = "0";
  s.n.expires_at_ms = 0;
  EXPECT_EQ(header_of(make_adapter(once)->build(s.ctx(t0)), "apns-expiration"), "0");
  s.n.expires_at_ms = 1'700'000'060'000;
  EXPECT_EQ(header_of(make_adapter(once)->build(s.ctx(t0)), "apns-expiration"), "1700000060");
}

TEST(ApnsAdapter, BuildsAnApnsPost) {
  const std::int64_t t0 = 1'700'000'000'000;
  auto a = make_adapter(apns_config());
  Send s;
  s.n.id = 99;
  s.n.priority = Priority::high;
  s.n.recipient_json = R"({"apns_token":"a1b2c3"})";
  s.n.data_json = R"({"title":"Hello"})";
  s.n.expires_at_ms = 1'700'000'600'500;
  const http::Request req = a->build(s.ctx(t0));
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.url, "http://127.0.0.1:8026/3/device/a1b2c3");
  EXPECT_EQ(req.version, http::Request::Version::any);
  EXPECT_EQ(header_of(req, "apns-topic"), "com.example.app");
  EXPECT_EQ(header_of(req, "apns-push-type"), "alert");
  EXPECT_EQ(header_of(req, "apns-priority"), "10");
  EXPECT_EQ(header_of(req, "apns-expiration"), "1700000600");
  EXPECT_EQ(header_of(req, "apns-id"), "<absent>");
  EXPECT_EQ(json::parse(req.body),
            json::parse(R"({"aps":{"alert":{"title":"Hello","body":"Your code is 1234"}},"herald_id":99})"));
  EXPECT_EQ(a->address(s.n), "a1b2c3");

  s.n.priority = Priority::normal;
  s.n.expires_at_ms = 0;
  s.n.data_json = "{}";
  const http::Request plain = a->build(s.ctx(t0));
  EXPECT_EQ(header_of(plain, "apns-priority"), "5");
  EXPECT_EQ(header_of(plain, "apns-expiration"), "<absent>");  // see WithoutExpiresAt... below
  EXPECT_EQ(json::parse(plain.body), json::parse(R"({"aps":{"alert":{"body":"Your code is 1234"}},"herald_id":99})"));
  s.n.priority = Priority::critical;
  EXPECT_EQ(header_of(a->build(s.ctx(t0)), "apns-priority"), "10");

  ProviderConfig c = apns_config();
  c.settings["http2"] = "prior_knowledge";
  c.settings["push_type"] = "background";
  const http::Request bg = make_adapter(c)->build(s.ctx(t0));
  EXPECT_EQ(bg.version, http::Request::Version::http2_prior_knowledge);
  EXPECT_EQ(header_of(bg, "apns-push-type"), "background");
  EXPECT_EQ(header_of(bg, "apns-priority"), "5");
  c.settings["http2"] = "off";
  EXPECT_EQ(make_adapter(c)->build(s.ctx(t0)).version, http::Request::Version::http1_1);
  c.url.clear();
  EXPECT_EQ(make_adapter(c)->build(s.ctx(t0)).url, "https://api.push.apple.com/3/device/a1b2c3");
}

TEST(ApnsAdapter, RendersTheStepsTitleImageAndCustomKeys) {
  const std::int64_t t0 = 1'700'000'000'000;
  auto a = make_adapter(apns_config());
  Send s;
  s.n.id = 99;
  s.n.recipient_json = R"({"apns_token":"a1b2c3"})";
  s.n.data_json = R"({"title":"old","name":"Ada"})";
  s.plan.content.title = "Hi {name}";
  s.plan.content.image = "https://img.example.test/a.png";
  s.plan.content.data_json = R"({"screen":"home","who":"{name}","aps":"no"})";
  EXPECT_EQ(json::parse(a->build(s.ctx(t0)).body), json::parse(R"({
      "aps":{"alert":{"title":"Hi Ada","body":"Your code is 1234"},"mutable-content":1},
      "image":"https://img.example.test/a.png","screen":"home","who":"Ada","herald_id":99})"));
  // Without a step title, data.title as before; without an image, no mutable-content.
  s.plan.content = Content{};
  EXPECT_EQ(json::parse(a->build(s.ctx(t0)).body),
            json::parse(R"({"aps":{"alert":{"title":"old","body":"Your code is 1234"}},"herald_id":99})"));
  s.plan.content.title = "{nick}";
  EXPECT_THROW((void)a->build(s.ctx(t0)), TemplateError);
}

TEST(ApnsAdapter, ProviderTokenIsAnEs256JwtSignedWithTheKey) {
  const std::int64_t t0 = 1'700'000'000'777;
  auto a = make_adapter(apns_config());
  Send s;
  const Jwt jwt = split_jwt(bearer_of(a->build(s.ctx(t0))));
  EXPECT_EQ(jwt.header, json::parse(R"({"alg":"ES256","kid":"ABC123DEFG"})"));
  EXPECT_EQ(jwt.claims, json::parse(R"({"iss":"DEF123GHIJ","iat":1700000000})"));
  ASSERT_EQ(jwt.signature.size(), 64u);
  const std::string der = jose_to_der(jwt.signature);
  const std::string pub = crypto::PrivateKey(ec_pem()).public_key_base64();
  EXPECT_TRUE(crypto::verify_es256_der(pub, jwt.signing_input, der));
  EXPECT_TRUE(verify_with_public_key(ec_pem(), jwt.signing_input, der));
  EXPECT_FALSE(crypto::verify_es256_der(pub, jwt.signing_input + "x", der));
}

TEST(ApnsAdapter, ProviderTokenIsReusedForFiftyMinutes) {
  const std::int64_t t0 = 1'700'000'000'000;
  auto a = make_adapter(apns_config());
  Send s;
  const std::string first = bearer_of(a->build(s.ctx(t0)));
  EXPECT_EQ(bearer_of(a->build(s.ctx(t0 + 20 * minute))), first);
  EXPECT_EQ(bearer_of(a->build(s.ctx(t0 + 50 * minute - 1))), first);
  const std::string second = bearer_of(a->build(s.ctx(t0 + 50 * minute)));
  EXPECT_NE(second, first);
  EXPECT_EQ(split_jwt(second).claims["iat"], (t0 + 50 * minute) / 1000);
  EXPECT_EQ(bearer_of(a->build(s.ctx(t0 + 99 * minute))), second);
}

TEST(ApnsAdapter, RefusedProviderTokenIsReMintedAtOnce) {
  for (const char* reason : {"ExpiredProviderToken", "InvalidProviderToken"}) {
    const std::int64_t t0 = now_ms() - 2 * minute;
    auto a = make_adapter(apns_config());
    Send s;
    const std::string first = bearer_of(a->build(s.ctx(t0)));
    auto o = a->classify(answer(403, json{{"reason", reason}}.dump()));
    EXPECT_EQ(o.kind, OutcomeKind::retryable);
    EXPECT_EQ(o.error, std::string("HTTP 403: ") + reason);
    const std::string second = bearer_of(a->build(s.ctx(t0 + minute)));
    EXPECT_NE(second, first);
    EXPECT_EQ(split_jwt(second).claims["iat"], (t0 + minute) / 1000);
    EXPECT_EQ(bearer_of(a->build(s.ctx(t0 + minute + 1))), second) << "re-minted once, then cached";

    // A refusal of a request sent before the new token existed does not re-mint again.
    http::Response stale = answer(403, json{{"reason", reason}}.dump());
    stale.latency = std::chrono::minutes(10);
    (void)a->classify(stale);
    EXPECT_EQ(bearer_of(a->build(s.ctx(t0 + minute + 2))), second);
  }
}

TEST(ApnsAdapter, ClassifiesEveryApnsAnswer) {
  auto a = make_adapter(apns_config());
  auto ok = a->classify(answer(200, "", {{"apns-id", "EC1BF194-B3B2-424A-89A9-5A918A6E6B6B"}}));
  EXPECT_EQ(ok.kind, OutcomeKind::accepted);
  EXPECT_EQ(ok.provider_message_id, "EC1BF194-B3B2-424A-89A9-5A918A6E6B6B");

  auto gone = a->classify(answer(410, R"({"reason":"Unregistered","timestamp":1700000000000})"));
  EXPECT_EQ(gone.kind, OutcomeKind::recipient_invalid);
  EXPECT_EQ(gone.error, "HTTP 410: Unregistered");
  EXPECT_EQ(a->classify(answer(410, R"({"reason":"ExpiredToken"})")).kind, OutcomeKind::recipient_invalid);
  EXPECT_EQ(a->classify(answer(400, R"({"reason":"BadDeviceToken"})")).kind, OutcomeKind::recipient_invalid);
  EXPECT_EQ(a->classify(answer(400, R"({"reason":"DeviceTokenNotForTopic"})")).kind, OutcomeKind::recipient_invalid);

  auto topic = a->classify(answer(400, R"({"reason":"BadTopic"})"));
  EXPECT_EQ(topic.kind, OutcomeKind::permanent);
  EXPECT_EQ(topic.error, "HTTP 400: BadTopic");
  EXPECT_EQ(a->classify(answer(403, R"({"reason":"BadCertificateEnvironment"})")).kind, OutcomeKind::permanent);
  EXPECT_EQ(a->classify(answer(413, R"({"reason":"PayloadTooLarge"})")).kind, OutcomeKind::permanent);

  auto busy = a->classify(answer(429, R"({"reason":"TooManyRequests"})", {{"retry-after", "4"}}));
  EXPECT_EQ(busy.kind, OutcomeKind::retryable);
  EXPECT_EQ(busy.retry_after_ms, 4000);
  EXPECT_EQ(a->classify(answer(500, R"({"reason":"InternalServerError"})")).kind, OutcomeKind::retryable);
  EXPECT_EQ(a->classify(answer(503, R"({"reason":"ServiceUnavailable"})")).kind, OutcomeKind::retryable);
  http::Response timeout;
  timeout.timed_out = true;
  EXPECT_EQ(a->classify(timeout).kind, OutcomeKind::retryable);
}

}  // namespace
