// The sandbox's FCM (token endpoint + messages:send) and APNs, over HTTP/1.1 and h2c.
#include <regex>

#include "herald/crypto.hpp"
#include "test_sandbox_support.hpp"

namespace {

using namespace sandbox_test;
using herald::sandbox::Server;
namespace crypto = herald::crypto;

const crypto::PrivateKey& rsa() {
  static const crypto::PrivateKey k(crypto::generate_private_key_pem("rsa"));
  return k;
}
const crypto::PrivateKey& ec() {
  static const crypto::PrivateKey k(crypto::generate_private_key_pem("ec"));
  return k;
}

std::int64_t now_s() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string google_jwt(json claims) {
  return crypto::jwt_sign(rsa(), "RS256", R"({"alg":"RS256","typ":"JWT"})", claims.dump());
}

json good_claims() {
  return {{"iss", "sa@p.iam.gserviceaccount.com"},
          {"scope", "https://www.googleapis.com/auth/firebase.messaging"},
          {"aud", "https://oauth2.googleapis.com/token"},
          {"iat", now_s()},
          {"exp", now_s() + 3600}};
}

Response token(const Server& s, const std::string& assertion) {
  return send("POST", s.url() + "/token",
              "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + assertion,
              {"Content-Type: application/x-www-form-urlencoded"});
}

Response fcm_send(const Server& s, const std::string& bearer, const json& body) {
  return send("POST", s.url() + "/v1/projects/proj-1/messages:send", body.dump(),
              {"Content-Type: application/json", "Authorization: Bearer " + bearer});
}

std::string apns_jwt(std::int64_t iat = now_s()) {
  return crypto::jwt_sign(ec(), "ES256", R"({"alg":"ES256","kid":"KEY123"})",
                          json{{"iss", "TEAM123"}, {"iat", iat}}.dump());
}

const std::string kDevice(64, 'a');

Request apns_request(const std::string& base, const std::string& device, std::vector<std::string> headers) {
  Request r;
  r.method = "POST";
  r.url = base + "/3/device/" + device;
  r.body = R"({"aps":{"alert":{"title":"T","body":"B"}}})";
  r.headers = std::move(headers);
  return r;
}

}  // namespace

TEST(SandboxFcm, TokenThenSend) {
  Server server(options());
  Response r = token(server, google_jwt(good_claims()));
  ASSERT_EQ(r.status, 200) << r.body;
  const json t = body_json(r);
  EXPECT_EQ(t["token_type"], "Bearer");
  EXPECT_EQ(t["expires_in"], 3600);
  const std::string access = t["access_token"];
  EXPECT_EQ(access.rfind("sbx-fcm-", 0), 0u);

  r = fcm_send(server, access, {{"message", {{"token", "device-1"}, {"notification", {{"title", "Hi"}, {"body", "there"}}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(std::regex_match(body_json(r)["name"].get<std::string>(), std::regex("projects/proj-1/messages/\\d+")));
  const json recs = server.messages("fcm");
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0]["to"], "device-1");
  EXPECT_EQ(recs[0]["subject"], "Hi");
  EXPECT_EQ(recs[0]["text"], "there");
}

TEST(SandboxFcm, BadAssertionsAreInvalidGrant) {
  Server server(options());
  json c = good_claims();
  c["exp"] = now_s() - 10;
  json no_scope = good_claims();
  no_scope["scope"] = "https://www.googleapis.com/auth/cloud-platform";
  json no_iss = good_claims();
  no_iss.erase("iss");
  const std::string es = crypto::jwt_sign(ec(), "ES256", R"({"alg":"ES256"})", good_claims().dump());
  for (const std::string& a : {google_jwt(c), google_jwt(no_scope), google_jwt(no_iss), es, std::string("a.b"),
                               std::string("not-a-jwt")}) {
    const Response r = token(server, a);
    EXPECT_EQ(r.status, 400) << a;
    EXPECT_EQ(body_json(r)["error"], "invalid_grant");
  }
}

TEST(SandboxFcm, SendErrors) {
  Server server(options());
  const std::string access = body_json(token(server, google_jwt(good_claims())))["access_token"];
  Response r = fcm_send(server, "sbx-fcm-999", {{"message", {{"token", "d"}}}});
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(body_json(r)["error"]["status"], "UNAUTHENTICATED");

  r = fcm_send(server, access, {{"message", {{"token", "unregistered-abc"}}}});
  EXPECT_EQ(r.status, 404);
  json e = body_json(r)["error"];
  EXPECT_EQ(e["status"], "NOT_FOUND");
  EXPECT_EQ(e["details"][0]["@type"], "type.googleapis.com/google.firebase.fcm.v1.FcmError");
  EXPECT_EQ(e["details"][0]["errorCode"], "UNREGISTERED");

  r = fcm_send(server, access, {{"message", {{"token", "d"}, {"topic", "news"}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(body_json(r)["error"]["status"], "INVALID_ARGUMENT");
  r = fcm_send(server, access, {{"message", {{"topic", "news"}, {"data", {{"x", std::string(5000, 'x')}}}}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(body_json(r)["error"]["details"][0]["errorCode"], "INVALID_ARGUMENT");
  EXPECT_TRUE(server.messages().empty());

  herald::sandbox::Faults f;
  f.error_rate = 1.0;
  f.error_status = 503;
  server.set_faults("fcm", f);
  r = fcm_send(server, access, {{"message", {{"topic", "news"}}}});
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(body_json(r)["error"]["details"][0]["errorCode"], "UNAVAILABLE");
}

TEST(SandboxFcm, ExpiredAccessTokenIs401) {
  // Expiry without waiting for it: a lifetime of 0 s mints a token that has expired already.
  // The setting applies to tokens minted after it, so one minted before stays good.
  Server server(options());
  ASSERT_EQ(send("PUT", server.url() + "/_sandbox/settings/fcm", R"({"token_ttl_s":3600})").status, 200);
  const std::string good = body_json(token(server, google_jwt(good_claims())))["access_token"];
  ASSERT_EQ(send("PUT", server.url() + "/_sandbox/settings/fcm", R"({"token_ttl_s":0})").status, 200);
  const json t = body_json(token(server, google_jwt(good_claims())));
  EXPECT_EQ(t["expires_in"], 0);
  const std::string expired = t["access_token"];
  EXPECT_NE(expired, good);
  const Response r = fcm_send(server, expired, {{"message", {{"topic", "a"}}}});
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(body_json(r)["error"]["status"], "UNAUTHENTICATED") << r.body;
  EXPECT_EQ(fcm_send(server, good, {{"message", {{"topic", "a"}}}}).status, 200);
  ASSERT_EQ(send("PUT", server.url() + "/_sandbox/settings/fcm", R"({"token_ttl_s":3600})").status, 200);
  const std::string fresh = body_json(token(server, google_jwt(good_claims())))["access_token"];
  EXPECT_NE(fresh, expired);
  EXPECT_EQ(fcm_send(server, fresh, {{"message", {{"topic", "a"}}}}).status, 200);
}

TEST(SandboxApns, SuccessAndErrorsOverHttp1AndH2c) {
  Server::Options o = options();
  o.h2c_port = 0;
  Server server(o);
  ASSERT_NE(server.h2c_port(), 0);
  EXPECT_EQ(server.h2c_url(), "http://127.0.0.1:" + std::to_string(server.h2c_port()));
  const std::vector<std::string> good = {"authorization: bearer " + apns_jwt(), "apns-topic: com.example.app",
                                         "apns-push-type: alert"};
  for (const bool h2 : {false, true}) {
    const std::string base = h2 ? server.h2c_url() : server.url();
    const auto go = [&](const std::string& device, std::vector<std::string> headers) {
      Request r = apns_request(base, device, std::move(headers));
      r.version = h2 ? Request::Version::http2_prior_knowledge : Request::Version::http1_1;
      return call(std::move(r));
    };
    std::vector<std::string> with_id = good;
    with_id.emplace_back("apns-id: 123E4567-E89B-12D3-A456-426614174000");
    Response r = go(kDevice, with_id);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(r.body.empty());
    EXPECT_EQ(r.header("apns-id"), "123E4567-E89B-12D3-A456-426614174000");
    r = go(kDevice, good);
    EXPECT_EQ(r.status, 200);
    EXPECT_TRUE(std::regex_match(r.header("apns-id"), std::regex("[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}")))
        << r.header("apns-id");

    EXPECT_EQ(body_json(go(kDevice, {"apns-topic: t"}))["reason"], "MissingProviderToken");
    r = go(kDevice, {"authorization: bearer not.a.jwt", "apns-topic: t"});
    EXPECT_EQ(r.status, 403);
    EXPECT_EQ(body_json(r)["reason"], "InvalidProviderToken");
    const std::string rs = crypto::jwt_sign(rsa(), "RS256", R"({"alg":"RS256","kid":"K"})",
                                            json{{"iss", "T"}, {"iat", now_s()}}.dump());
    EXPECT_EQ(body_json(go(kDevice, {"authorization: bearer " + rs, "apns-topic: t"}))["reason"], "InvalidProviderToken");
    EXPECT_EQ(body_json(go(kDevice, {"authorization: bearer " + apns_jwt(now_s() - 7200), "apns-topic: t"}))["reason"],
              "ExpiredProviderToken");
    r = go(kDevice, {"authorization: bearer " + apns_jwt()});
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(body_json(r)["reason"], "MissingTopic");
    r = go("abc123", good);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(body_json(r)["reason"], "BadDeviceToken");
    r = go("dead" + std::string(60, '0'), good);
    EXPECT_EQ(r.status, 410);
    EXPECT_EQ(body_json(r)["reason"], "Unregistered");
    EXPECT_GT(body_json(r)["timestamp"].get<std::int64_t>(), 1'600'000'000'000);
  }
  const json recs = server.messages("apns");
  ASSERT_EQ(recs.size(), 4u);
  EXPECT_EQ(recs[0]["to"], kDevice);
  EXPECT_EQ(recs[0]["subject"], "T");
  EXPECT_EQ(recs[0]["text"], "B");
  EXPECT_EQ(recs[0]["http2"], false);
  EXPECT_EQ(recs[2]["http2"], true);

  herald::sandbox::Faults f;
  f.error_rate = 1.0;
  f.error_status = 429;
  f.error_code = "TooManyRequests";
  server.set_faults("apns", f);
  const Response limited = call(apns_request(server.url(), kDevice, good));
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(body_json(limited)["reason"], "TooManyRequests");
}
