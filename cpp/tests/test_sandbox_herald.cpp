// The sandbox's herald API additions: signed JSON receipts, status queries, callbacks settings,
// the web page and the keys.
#include "herald/crypto.hpp"
#include "eventually.hpp"
#include "test_sandbox_support.hpp"

namespace {

using namespace sandbox_test;
using herald::sandbox::Server;
namespace crypto = herald::crypto;

Response herald_send(const Server& s, const std::string& provider, const json& body, const std::string& key = {}) {
  std::vector<std::string> headers = {"Content-Type: application/json"};
  if (!key.empty()) headers.emplace_back("Idempotency-Key: " + key);
  return send("POST", s.url() + "/v1/" + provider + "/messages", body.dump(), headers);
}

}  // namespace

TEST(SandboxHerald, ReceiptsAreSignedWithTheSigningSecret) {
  Server::Options o = options();
  o.signing_secret = "s3cret";
  Server server(o);
  server.set_callbacks("*", {true, 10ms, ""});
  Listener hook;
  const json base = {{"callback_url", hook.url("/receipts/mail?x=1")}, {"text", "hi"}};
  json b1 = base;
  b1["id"] = 101;
  b1["to"] = {{"email", "bounce@example.com"}};
  json b2 = base;
  b2["id"] = 102;
  b2["to"] = {{"phone", "+15005550006"}};
  json b3 = base;
  b3["id"] = 103;
  b3["to"] = {{"email", "open@example.com"}};
  const std::string id1 = body_json(herald_send(server, "mail", b1))["id"];
  ASSERT_EQ(herald_send(server, "sms", b2).status, 202);
  ASSERT_EQ(herald_send(server, "mail", b3).status, 202);
  const auto got = hook.wait_for(4);
  ASSERT_EQ(got.size(), 4u);
  std::map<std::int64_t, std::vector<std::string>> statuses;
  for (const Received& r : got) {
    EXPECT_EQ(r.target, "/receipts/mail?x=1");
    const std::string sig = r.header("x-herald-signature");
    const auto comma = sig.find(",v1=");
    ASSERT_EQ(sig.rfind("t=", 0), 0u) << sig;
    ASSERT_NE(comma, std::string::npos) << sig;
    const std::string t = sig.substr(2, comma - 2);
    EXPECT_NEAR(std::stoll(t), std::time(nullptr), 5);
    EXPECT_EQ(sig.substr(comma + 4), crypto::hex(crypto::hmac_sha256("s3cret", t + "." + r.body)));
    const json receipt = json::parse(r.body);
    statuses[receipt["herald_id"].get<std::int64_t>()].push_back(receipt["status"]);
    if (receipt["herald_id"] == 101) {
      EXPECT_EQ(receipt["message_id"], id1);
    }
    if (receipt["herald_id"] == 102) {
      EXPECT_EQ(receipt["error_code"], "30003");
    }
  }
  using V = std::vector<std::string>;
  EXPECT_EQ(statuses[101], (V{"bounced_hard"}));
  EXPECT_EQ(statuses[102], (V{"failed"}));
  EXPECT_EQ(statuses[103], (V{"delivered", "opened"}));
}

TEST(SandboxHerald, ReceiptsOfAStepNameTheStepsOwnIdFromXHeraldId) {
  Server server(options());
  server.set_callbacks("*", {true, 10ms, ""});
  Listener hook;
  // A step of a plan with many steps: the body carries the parent's id and the step, the
  // X-Herald-Id header the step's own id, which is what the engine's receipt intake looks up.
  const json body = {{"callback_url", hook.url("/receipts/push")}, {"id", 500}, {"step", 1},
                     {"to", {{"push_token", "t"}}}, {"text", "hi"}};
  ASSERT_EQ(send("POST", server.url() + "/v1/push/messages", body.dump(),
                 {"Content-Type: application/json", "X-Herald-Id: 501"}).status, 202);
  const auto got = hook.wait_for(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(json::parse(got[0].body)["herald_id"], 501);
}

TEST(SandboxHerald, StatusQueriesByIdAndIdempotencyKey) {
  Server server(options());
  // 200 ms: long enough that the first lookup still sees "accepted" on a loaded machine.
  ASSERT_EQ(send("PUT", server.url() + "/_sandbox/callbacks/mail", R"({"enabled":false,"delay_ms":200})").status, 200);
  const std::string id =
      body_json(herald_send(server, "mail", {{"id", 7}, {"to", {{"email", "x@example.com"}}}}, "herald-7"))["id"];
  ASSERT_EQ(herald_send(server, "other", {{"id", 8}}, "herald-8").status, 202);

  Response r = send("GET", server.url() + "/v1/mail/messages/" + id);
  ASSERT_EQ(r.status, 200) << r.body;
  json m = body_json(r);
  EXPECT_EQ(m["id"], id);
  EXPECT_EQ(m["status"], "accepted");
  EXPECT_EQ(m["idempotency_key"], "herald-7");
  // The status turns final delay_ms after acceptance: look it up until it has.
  std::string status;
  EXPECT_TRUE(herald::testing::eventually([&] {
    status = body_json(send("GET", server.url() + "/v1/mail/messages/" + id))["status"].get<std::string>();
    return status != "accepted";
  }));
  EXPECT_EQ(status, "delivered");

  EXPECT_EQ(send("GET", server.url() + "/v1/mail/messages/sbx-999").status, 404);
  EXPECT_EQ(send("GET", server.url() + "/v1/other/messages/" + id).status, 404);  // another provider's

  json list = body_json(send("GET", server.url() + "/v1/mail/messages?idempotency_key=herald-7"));
  ASSERT_EQ(list["messages"].size(), 1u);
  EXPECT_EQ(list["messages"][0]["id"], id);
  EXPECT_EQ(list["messages"][0]["status"], "delivered");
  list = body_json(send("GET", server.url() + "/v1/mail/messages?idempotency_key=herald-8"));
  EXPECT_TRUE(list["messages"].empty());
}

TEST(SandboxControl, WebPageIsServedWithItsScriptAndHoldsNoRecords) {
  Server server(options());
  ASSERT_EQ(herald_send(server, "sms", {{"to", {{"email", "<b>x</b>@example.com"}}}, {"text", "a & b <script>"}}).status,
            202);
  const Response r = send("GET", server.url() + "/");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.header("content-type").find("text/html"), std::string::npos);
  EXPECT_NE(r.body.find("<script src=\"/_sandbox/page.js\"></script>"), std::string::npos);
  // Records reach the page as JSON only (rendered as text by the script), never inside the HTML.
  EXPECT_EQ(r.body.find("a & b"), std::string::npos);
  EXPECT_EQ(r.body.find("example.com"), std::string::npos);
  const Response js = send("GET", server.url() + "/_sandbox/page.js");
  ASSERT_EQ(js.status, 200);
  EXPECT_NE(js.header("content-type").find("javascript"), std::string::npos);
  EXPECT_NE(js.body.find("/_sandbox/messages?after="), std::string::npos);
}

TEST(SandboxControl, LongPollAnswersWhenARecordArrives) {
  Server server(options());
  ASSERT_EQ(herald_send(server, "sms", {{"text", "first"}}).status, 202);
  // A poll for what is newer than seq 0 answers at once with the record and the last seq.
  json now = body_json(send("GET", server.url() + "/_sandbox/messages?after=0&wait_ms=20000"));
  ASSERT_EQ(now["messages"].size(), 1u);
  EXPECT_EQ(now["last_seq"], 1);
  EXPECT_EQ(now["messages"][0]["text"], "first");
  EXPECT_EQ(now["messages"][0]["method"], "POST");
  ASSERT_TRUE(now["messages"][0]["timeline"].is_array());

  // A poll for what is newer than seq 1 waits for the next record.
  Request poll;
  poll.method = "GET";
  poll.url = server.url() + "/_sandbox/messages?after=1&wait_ms=20000";
  poll.version = Request::Version::http1_1;
  auto answered = std::make_shared<std::promise<Response>>();
  auto future = answered->get_future();
  client().submit(std::move(poll), [answered](Response&& r) { answered->set_value(std::move(r)); });
  // Another request answered in the meantime: the poll is still parked.
  ASSERT_EQ(send("GET", server.url() + "/_sandbox/stats").status, 200);
  EXPECT_NE(future.wait_for(0s), std::future_status::ready);
  ASSERT_EQ(herald_send(server, "sms", {{"text", "second"}}).status, 202);
  ASSERT_EQ(future.wait_for(20s), std::future_status::ready);
  const json later = body_json(future.get());
  ASSERT_EQ(later["messages"].size(), 1u);
  EXPECT_EQ(later["messages"][0]["text"], "second");
  EXPECT_EQ(later["last_seq"], 2);

  // A seq this server never made (a page left open across a restart) gets everything.
  EXPECT_EQ(body_json(send("GET", server.url() + "/_sandbox/messages?after=99&wait_ms=20000"))["messages"].size(), 2u);
  // Without a wait the poll answers at once, even with nothing new.
  EXPECT_TRUE(body_json(send("GET", server.url() + "/_sandbox/messages?after=2"))["messages"].empty());
  // limit keeps the newest records when more are new.
  const json newest = body_json(send("GET", server.url() + "/_sandbox/messages?after=0&limit=1"));
  ASSERT_EQ(newest["messages"].size(), 1u);
  EXPECT_EQ(newest["messages"][0]["text"], "second");
  EXPECT_EQ(send("GET", server.url() + "/_sandbox/messages?after=0&limit=0").status, 400);
  EXPECT_EQ(send("GET", server.url() + "/_sandbox/messages?after=x").status, 400);
  EXPECT_EQ(send("GET", server.url() + "/_sandbox/messages?after=0&wait_ms=600000").status, 400);
}

TEST(SandboxControl, RecordsKeepRequestHeadersWithSecretsMasked) {
  Server server(options());
  std::vector<std::string> headers = {"Content-Type: application/json", "Authorization: Bearer sk_live_0123456789abcdef",
                                      "X-Api-Key: short", "Idempotency-Key: idem-1",
                                      "X-Auth-Token: tok-secret-ABCDEFGHIJ", "X-Webhook-Signature: sha256=feedfacecafe01",
                                      "X-Herald-Id: 77"};
  ASSERT_EQ(send("POST", server.url() + "/v1/sms/messages", R"({"text":"hi"})", headers).status, 202);
  const json m = body_json(send("GET", server.url() + "/_sandbox/messages"))[0];
  const json& h = m["request_headers"];
  EXPECT_EQ(h["authorization"], "Bearer sk_l\xe2\x80\xa6 (24 chars)");
  EXPECT_EQ(h["x-api-key"], "\xe2\x80\xa6 (5 chars)");
  EXPECT_EQ(h["idempotency-key"], "idem-1");  // not a secret
  EXPECT_EQ(h["content-type"], "application/json");
  // The older "headers" field (x-* and idempotency-key) masks the same way.
  const json& x = m["headers"];
  EXPECT_EQ(x["x-api-key"], "\xe2\x80\xa6 (5 chars)");
  EXPECT_EQ(x["x-auth-token"], "tok-\xe2\x80\xa6 (21 chars)");
  EXPECT_EQ(x["x-herald-id"], "77");
  EXPECT_EQ(x["idempotency-key"], "idem-1");
  const std::string all = m.dump();
  for (const char* secret : {"0123456789abcdef", "short", "secret-ABCDEFGHIJ", "feedfacecafe01"}) {
    EXPECT_EQ(all.find(secret), std::string::npos) << secret;
  }
}

TEST(SandboxControl, ServiceFilterCallbacksValidationAndKeys) {
  Server server(options());
  ASSERT_EQ(herald_send(server, "sms", json::object()).status, 202);
  ASSERT_EQ(send("POST", server.url() + "/services/T/B/X", R"({"text":"x"})").status, 200);
  EXPECT_EQ(body_json(send("GET", server.url() + "/_sandbox/messages?service=slack")).size(), 1u);
  EXPECT_EQ(body_json(send("GET", server.url() + "/_sandbox/messages?provider=sms")).size(), 1u);
  EXPECT_EQ(send("PUT", server.url() + "/_sandbox/callbacks/twilio", R"({"delay_ms":"x"})").status, 400);
  EXPECT_EQ(send("PUT", server.url() + "/_sandbox/callbacks/twilio", R"({"bogus":1})").status, 400);
  const json keys = body_json(send("GET", server.url() + "/_sandbox/keys"));
  EXPECT_EQ(keys["signing_secret"], "sandbox-secret");
  EXPECT_FALSE(keys["sendgrid_verification_key"].get<std::string>().empty());
}
