// The sandbox's SendGrid mail/send and its signed Event Webhook over real HTTP on loopback.
#include <map>
#include <regex>

#include "herald/crypto.hpp"
#include "test_sandbox_support.hpp"

namespace {

using namespace sandbox_test;
using herald::sandbox::Server;
namespace crypto = herald::crypto;

Response mail(const Server& s, const json& body, bool auth = true) {
  std::vector<std::string> headers = {"Content-Type: application/json"};
  if (auth) headers.emplace_back("Authorization: Bearer SG.test-key");
  return send("POST", s.url() + "/v3/mail/send", body.dump(), headers);
}

json message(std::vector<std::string> to) {
  json p = json::array();
  for (auto& t : to) p.push_back({{"to", json::array({{{"email", t}}})}, {"custom_args", {{"herald_id", "42"}}}});
  return {{"personalizations", p},
          {"from", {{"email", "noreply@example.com"}}},
          {"subject", "Hello"},
          {"content", json::array({{{"type", "text/plain"}, {"value", "Hi there"}}})}};
}

}  // namespace

TEST(SandboxSendGrid, AcceptsWith202AndRecordsOneMessagePerRecipient) {
  Server server(options());
  json body = message({"a@example.com", "b@example.com"});
  body["custom_args"] = {{"campaign", "c1"}};
  const Response r = mail(server, body);
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_TRUE(r.body.empty());
  const std::string id = r.header("x-message-id");
  EXPECT_TRUE(std::regex_match(id, std::regex("[A-Za-z0-9_-]{22}"))) << id;
  const json recs = server.messages("sendgrid");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0]["to"], "a@example.com");
  EXPECT_EQ(recs[1]["to"], "b@example.com");
  EXPECT_EQ(recs[0]["subject"], "Hello");
  EXPECT_EQ(recs[0]["x_message_id"], id);
  EXPECT_EQ(recs[0]["id"], id + ".sandbox.0");
  EXPECT_EQ(recs[0]["custom_args"], (json{{"campaign", "c1"}, {"herald_id", "42"}}));
  EXPECT_EQ(recs[0]["content"][0]["value"], "Hi there");
  EXPECT_EQ(recs[0]["status"], "processed");
}

// text/plain then text/html: the record lists the html as each recipient receives it; text/plain
// anywhere but first is refused, as SendGrid does.
TEST(SandboxSendGrid, RecordsTheHtmlPartAndWantsTheTextFirst) {
  Server server(options());
  json body = message({"a@example.com", "b@example.com"});
  body["personalizations"][0]["substitutions"] = {{"{name}", "Ada"}};
  body["personalizations"][1]["substitutions"] = {{"{name}", "Bo"}};
  body["content"].push_back({{"type", "text/html"}, {"value", "<p>Hi {name}</p>"}});
  ASSERT_EQ(mail(server, body).status, 202);
  const json recs = server.messages("sendgrid");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0]["html"], "<p>Hi Ada</p>");
  EXPECT_EQ(recs[1]["html"], "<p>Hi Bo</p>");

  json reversed = message({"c@example.com"});
  reversed["content"] = json::array({{{"type", "text/html"}, {"value", "<p>x</p>"}}, {{"type", "text/plain"}, {"value", "x"}}});
  const Response r = mail(server, reversed);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(body_json(r)["errors"][0]["field"], "content.1.type");
  EXPECT_EQ(server.messages("sendgrid").size(), 2u);
}

TEST(SandboxSendGrid, RejectsWithoutBearerAndInvalidRequests) {
  Server server(options());
  Response r = mail(server, message({"a@example.com"}), false);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(body_json(r)["errors"][0]["message"], "The provided authorization grant is invalid, expired, or revoked");

  const auto field_of = [&](const json& body) {
    const Response res = mail(server, body);
    EXPECT_EQ(res.status, 400) << body.dump();
    const json e = body_json(res);
    EXPECT_TRUE(e["errors"][0]["message"].is_string());
    return e["errors"][0]["field"];
  };
  json b = message({"a@example.com"});
  b["personalizations"] = json::array();
  EXPECT_EQ(field_of(b), "personalizations");
  b = message({"a@example.com"});
  b["personalizations"][0].erase("to");
  EXPECT_EQ(field_of(b), "personalizations.0.to");
  b = message({"a@example.com", "A@example.com"});
  EXPECT_EQ(field_of(b), "personalizations.1.to");  // each address once per request
  b = message({"a@example.com"});
  b["personalizations"][0]["to"][0].erase("email");
  EXPECT_EQ(field_of(b), "personalizations.0.to.0.email");
  b = message({"a@example.com"});
  b.erase("from");
  EXPECT_EQ(field_of(b), "from.email");
  b = message({"a@example.com"});
  b.erase("subject");
  EXPECT_EQ(field_of(b), "subject");
  b = message({"a@example.com"});
  b["content"] = json::array();
  EXPECT_EQ(field_of(b), "content");
  b = message({"a@example.com"});
  b["content"][0].erase("type");
  EXPECT_EQ(field_of(b), "content.0.type");
  std::vector<std::string> many;
  for (int i = 0; i < 1001; ++i) {
    std::string address = std::to_string(i);  // built in steps: GCC 12 -Wrestrict misfires on "u" + to_string(i)
    address.insert(0, 1, 'u');
    address.append("@example.com");
    many.push_back(std::move(address));
  }
  EXPECT_EQ(field_of(message(many)), "personalizations");
  EXPECT_TRUE(server.messages().empty());

  // A subject per personalization, or a template instead of content, is enough.
  b = message({"a@example.com"});
  b.erase("subject");
  b["personalizations"][0]["subject"] = "Per person";
  b.erase("content");
  b["template_id"] = "d-123";
  EXPECT_EQ(mail(server, b).status, 202);
  EXPECT_EQ(mail(server, message(std::vector<std::string>(1, "x@example.com"))).status, 202);
}

TEST(SandboxSendGrid, EventWebhookIsOneSignedBatchPerSend) {
  Server server(options());
  Listener hook;
  const Response put = send("PUT", server.url() + "/_sandbox/callbacks/sendgrid",
                            json{{"url", hook.url("/receipts/email")}, {"delay_ms", 20}}.dump());
  ASSERT_EQ(put.status, 200) << put.body;
  const Response r = mail(server, message({"ok@example.com", "bounce@example.com", "soft-bounce@example.com",
                                           "unsubscribe@example.com", "open@example.com"}));
  ASSERT_EQ(r.status, 202);
  const std::string id = r.header("x-message-id");
  const auto got = hook.wait_for(1);
  ASSERT_EQ(got.size(), 1u);
  const Received& post = got[0];
  EXPECT_EQ(post.target, "/receipts/email");

  // The signature verifies with the published key over timestamp + body.
  const json keys = body_json(send("GET", server.url() + "/_sandbox/keys"));
  EXPECT_EQ(keys, server.keys());
  EXPECT_EQ(keys["signing_secret"], "sandbox-secret");
  const std::string ts = post.header("x-twilio-email-event-webhook-timestamp");
  const std::string sig = crypto::base64_decode(post.header("x-twilio-email-event-webhook-signature"));
  const std::string pub = keys["sendgrid_verification_key"];
  EXPECT_TRUE(crypto::verify_es256_der(pub, ts + post.body, sig));
  EXPECT_FALSE(crypto::verify_es256_der(pub, ts + post.body + " ", sig));
  EXPECT_NEAR(std::stoll(ts), std::time(nullptr), 5);

  const json events = json::parse(post.body);
  ASSERT_TRUE(events.is_array());
  std::map<std::string, std::vector<std::string>> by_email;
  for (const json& e : events) {
    by_email[e["email"]].push_back(e["event"]);
    EXPECT_EQ(e["herald_id"], "42");  // custom_args at the top level
    EXPECT_EQ(e["sg_message_id"].get<std::string>().rfind(id + ".sandbox.", 0), 0u);
    EXPECT_TRUE(e["sg_event_id"].is_string());
    EXPECT_TRUE(e["timestamp"].is_number_integer());
    if (e["event"] == "bounce") {
      EXPECT_EQ(e["type"], "bounce");
    }
  }
  using V = std::vector<std::string>;
  EXPECT_EQ(by_email["ok@example.com"], (V{"processed", "delivered"}));
  EXPECT_EQ(by_email["bounce@example.com"], (V{"processed", "bounce"}));
  EXPECT_EQ(by_email["soft-bounce@example.com"], (V{"processed", "deferred", "delivered"}));
  EXPECT_EQ(by_email["unsubscribe@example.com"], (V{"processed", "delivered", "unsubscribe"}));
  EXPECT_EQ(by_email["open@example.com"], (V{"processed", "delivered", "open"}));

  // Records carry the final status.
  const json recs = server.messages("sendgrid");
  std::map<std::string, std::string> status;
  for (const json& m : recs) status[m["to"]] = m["status"];
  EXPECT_EQ(status["bounce@example.com"], "bounce");
  EXPECT_EQ(status["open@example.com"], "open");
  EXPECT_EQ(status["ok@example.com"], "delivered");
}

TEST(SandboxSendGrid, NoWebhookUrlNoEventsAndFaultsInSendGridFormat) {
  Server server(options());
  ASSERT_EQ(mail(server, message({"a@example.com"})).status, 202);
  herald::sandbox::Faults f;
  f.error_rate = 1.0;
  f.error_status = 503;
  server.set_faults("sendgrid", f);
  const Response r = mail(server, message({"a@example.com"}));
  EXPECT_EQ(r.status, 503);
  EXPECT_TRUE(body_json(r)["errors"].is_array());
  EXPECT_EQ(server.messages("sendgrid").size(), 1u);
}
