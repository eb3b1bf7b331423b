// The sandbox and webhook adapters: herald's JSON message, its X-Herald-Signature, herald's JSON
// receipts and the sandbox's status API. Pure logic: requests are built and inspected, answers crafted.
#include <gtest/gtest.h>

#include <cctype>

#include <nlohmann/json.hpp>

#include "../src/adapters/herald_signature.hpp"
#include "herald/crypto.hpp"
#include "herald/errors.hpp"
#include "herald/provider.hpp"

#include "adapter_test_support.hpp"

using namespace herald;
using herald::adapter_test::answer;
namespace sig = herald::adapters::herald_signature;

namespace {

constexpr std::int64_t t0 = 1'700'000'000;  // unix seconds
const std::string receipt_body = R"({"herald_id":42,"message_id":"sbx-1","status":"delivered"})";
// HMAC-SHA256("sandbox-secret", "1700000000." + receipt_body), computed with Python's hmac.
const std::string receipt_mac = "26fe45dd9ca080974d1f7a438ee0f696d4929e923ec61f610c8b910ee2ba67b3";

ProviderConfig sandbox_config(std::string secret = {}) {
  ProviderConfig c;
  c.name = "box";
  c.kind = "sandbox";
  c.url = "http://127.0.0.1:8025/";
  if (!secret.empty()) c.secrets["signing_secret"] = std::move(secret);
  return c;
}

ProviderConfig webhook_config(std::string secret = {}) {
  ProviderConfig c;
  c.name = "hook";
  c.kind = "webhook";
  c.url = "http://127.0.0.1:9000/in";
  if (!secret.empty()) c.secrets["signing_secret"] = std::move(secret);
  return c;
}

Notification note(Id id, std::string recipient) {
  Notification n;
  n.id = id;
  n.type = "note";
  n.recipient_json = std::move(recipient);
  n.data_json = R"({"text":"hi"})";
  return n;
}

InboundRequest receipt(std::string body, std::string signature, std::int64_t now_s = t0) {
  InboundRequest r;
  r.method = "POST";
  r.url = "http://engine.test/receipts/box";
  r.path = "/receipts/box";
  r.body = std::move(body);
  if (!signature.empty()) r.headers.emplace_back("x-herald-signature", std::move(signature));
  r.now_ms = now_s * 1000;
  return r;
}

bool has_header(const http::Request& r, const std::string& line) {
  for (const auto& h : r.headers) {
    if (h == line) return true;
  }
  return false;
}

std::string header_value(const http::Request& r, const std::string& name) {
  for (const auto& h : r.headers) {
    if (h.rfind(name + ": ", 0) == 0) return h.substr(name.size() + 2);
  }
  return {};
}

}  // namespace

// ---- the signature ------------------------------------------------------------------------------

TEST(HeraldSignature, SignMatchesAnIndependentHmac) {
  EXPECT_EQ(sig::sign("sandbox-secret", t0, receipt_body), "t=1700000000,v1=" + receipt_mac);
}

TEST(HeraldSignature, VerifyAcceptsGenuineAndRefusesTheRest) {
  const std::string good = "t=1700000000,v1=" + receipt_mac;
  EXPECT_EQ(sig::verify("sandbox-secret", good, receipt_body, t0 * 1000).status, 0);
  EXPECT_EQ(sig::verify("sandbox-secret", good, receipt_body, (t0 + 299) * 1000).status, 0);
  EXPECT_EQ(sig::verify("sandbox-secret", good, receipt_body, (t0 - 299) * 1000).status, 0);
  // upper-case hex and extra schemes are read
  std::string upper = receipt_mac;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(sig::verify("sandbox-secret", "t=1700000000, v0=abc, v1=" + upper, receipt_body, t0 * 1000).status, 0);
  EXPECT_EQ(sig::verify("sandbox-secret", "t=1700000000,v1=00,v1=" + receipt_mac, receipt_body, t0 * 1000).status, 0);

  for (const char* bad : {"", "garbage", "t=1700000000", "v1=abc", "t=abc,v1=00", "t=,v1=00", "t=-5,v1=00"}) {
    EXPECT_EQ(sig::verify("sandbox-secret", bad, receipt_body, t0 * 1000).status, 401) << bad;
  }
  const ReceiptCheck stale = sig::verify("sandbox-secret", good, receipt_body, (t0 + 301) * 1000);
  EXPECT_EQ(stale.status, 403);
  EXPECT_NE(stale.reason.find("stale"), std::string::npos);
  EXPECT_EQ(sig::verify("sandbox-secret", good, receipt_body, (t0 - 301) * 1000).status, 403);
  EXPECT_EQ(sig::verify("other-secret", good, receipt_body, t0 * 1000).status, 403);
  EXPECT_EQ(sig::verify("sandbox-secret", good, receipt_body + " ", t0 * 1000).status, 403);
  EXPECT_EQ(sig::verify("sandbox-secret", "t=1700000001,v1=" + receipt_mac, receipt_body, t0 * 1000).status, 403);
  const ReceiptCheck forged = sig::verify("sandbox-secret", "t=1700000000,v1=" + std::string(64, '0'), receipt_body, t0 * 1000);
  EXPECT_EQ(forged.status, 403);
  EXPECT_EQ(forged.reason.find("sandbox-secret"), std::string::npos);
}

// ---- the sandbox kind ---------------------------------------------------------------------------

TEST(SandboxAdapter, BuildsHeraldsJsonMessageWithTheCallbackUrl) {
  auto a = make_adapter(sandbox_config());
  const Notification n = note(7, R"({"id":"u1","email":"ada@example.com"})");
  PlanStep plan;
  plan.channel = "email";
  const std::string text = "hello Ada";
  const http::Request req = a->build(SendContext{n, plan, text, 2, true, t0 * 1000, "http://engine/receipts/box?hid=7"});
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.url, "http://127.0.0.1:8025/v1/box/messages");
  EXPECT_TRUE(has_header(req, "Idempotency-Key: herald-7"));
  EXPECT_TRUE(has_header(req, "X-Herald-Id: 7"));
  EXPECT_TRUE(has_header(req, "X-Herald-Attempt: 2"));
  EXPECT_TRUE(has_header(req, "X-Herald-In-Doubt: 1"));
  const auto body = nlohmann::json::parse(req.body);
  EXPECT_EQ(body["id"], 7);
  EXPECT_EQ(body["text"], "hello Ada");
  EXPECT_EQ(body["channel"], "email");
  EXPECT_EQ(body["to"]["email"], "ada@example.com");
  EXPECT_EQ(body["callback_url"], "http://engine/receipts/box?hid=7");
  const http::Request quiet = a->build(SendContext{n, plan, text, 1, false, 0, ""});
  EXPECT_FALSE(nlohmann::json::parse(quiet.body).contains("callback_url"));
}

// The step's other content goes in herald's message rendered, under plain names, only when set.
TEST(SandboxAdapter, CarriesTheStepsRenderedContent) {
  auto a = make_adapter(sandbox_config());
  Notification n = note(7, R"({"id":"u1","email":"ada@example.com"})");
  n.data_json = R"({"name":"Ada","order":42})";
  PlanStep plan;
  plan.channel = "email";
  const std::string text = "hello Ada";
  const auto plain = nlohmann::json::parse(a->build(SendContext{n, plan, text, 1, false, 0, ""}).body);
  for (const char* key : {"subject", "html", "title", "image", "payload"}) EXPECT_FALSE(plain.contains(key)) << key;
  plan.content.subject = "Order {order}";
  plan.content.html = "<b>{name}</b>";
  plan.content.title = "T {name}";
  plan.content.image = "https://i.test/{order}.png";
  plan.content.data_json = R"({"screen":"orders","id":"{order}"})";
  const auto body = nlohmann::json::parse(a->build(SendContext{n, plan, text, 1, false, 0, ""}).body);
  EXPECT_EQ(body["subject"], "Order 42");
  EXPECT_EQ(body["html"], "<b>Ada</b>");
  EXPECT_EQ(body["title"], "T Ada");
  EXPECT_EQ(body["image"], "https://i.test/42.png");
  EXPECT_EQ(body["payload"], nlohmann::json::parse(R"({"screen":"orders","id":"42"})"));
  plan.content.html = "<b>{nick}</b>";
  EXPECT_THROW((void)a->build(SendContext{n, plan, text, 1, false, 0, ""}), TemplateError);
}

TEST(SandboxAdapter, NeedsAUrlAndClassifiesLikeJsonProviders) {
  ProviderConfig c = sandbox_config();
  c.url.clear();
  EXPECT_THROW((void)make_adapter(c), ConfigError);
  auto a = make_adapter(sandbox_config());
  const Outcome ok = a->classify(answer(202, R"({"id":"sbx-3","status":"accepted"})"));
  EXPECT_EQ(ok.kind, OutcomeKind::accepted);
  EXPECT_EQ(ok.provider_message_id, "sbx-3");
  EXPECT_EQ(a->classify(answer(503)).kind, OutcomeKind::retryable);
  EXPECT_EQ(a->classify(answer(400, R"({"error":{"code":"recipient_invalid"}})")).kind, OutcomeKind::recipient_invalid);
}

TEST(SandboxAdapter, AddressFollowsTheChannelSetting) {
  const Notification both = note(1, R"({"phone":"+15550001","email":"a@example.com","push_token":"tok"})");
  EXPECT_EQ(make_adapter(sandbox_config())->address(both), "+15550001");  // no channel: phone first
  ProviderConfig c = sandbox_config();
  c.settings["channel"] = "email";
  EXPECT_EQ(make_adapter(c)->address(both), "a@example.com");
  c.settings["channel"] = "push";
  EXPECT_EQ(make_adapter(c)->address(both), "tok");
  c.settings["channel"] = "sms";
  EXPECT_EQ(make_adapter(c)->address(note(1, R"({"email":"b@example.com"})")), "b@example.com");  // falls back
  EXPECT_EQ(make_adapter(sandbox_config())->address(note(1, R"({"id":"x"})")), "");
}

TEST(SandboxAdapter, ReceiptsAreVerifiedWithTheDefaultOrConfiguredSecret) {
  auto a = make_adapter(sandbox_config());
  EXPECT_TRUE(a->has_receipts());
  EXPECT_EQ(a->verify_receipt(receipt(receipt_body, "t=1700000000,v1=" + receipt_mac)).status, 0);
  const ReceiptCheck missing = a->verify_receipt(receipt(receipt_body, ""));
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(a->verify_receipt(receipt(receipt_body, sig::sign("guess", t0, receipt_body))).status, 403);
  EXPECT_EQ(a->verify_receipt(receipt(receipt_body, sig::sign("sandbox-secret", t0 - 3600, receipt_body))).status, 403);

  auto own = make_adapter(sandbox_config("box-secret-value"));
  EXPECT_EQ(own->verify_receipt(receipt(receipt_body, "t=1700000000,v1=" + receipt_mac)).status, 403);
  const ReceiptCheck ok = own->verify_receipt(receipt(receipt_body, sig::sign("box-secret-value", t0, receipt_body)));
  EXPECT_EQ(ok.status, 0);
  const ReceiptCheck bad = own->verify_receipt(receipt(receipt_body, sig::sign("nope", t0, receipt_body)));
  EXPECT_EQ(bad.reason.find("box-secret-value"), std::string::npos);
}

TEST(SandboxAdapter, ParsesEveryReceiptStatus) {
  auto a = make_adapter(sandbox_config());
  const std::pair<const char*, ReceiptStatus> cases[] = {
      {"sent", ReceiptStatus::progress},           {"accepted", ReceiptStatus::progress},
      {"delivered", ReceiptStatus::delivered},     {"failed", ReceiptStatus::failed},
      {"bounced_soft", ReceiptStatus::bounced_soft}, {"bounced_hard", ReceiptStatus::bounced_hard},
      {"opened", ReceiptStatus::opened},           {"opted_out", ReceiptStatus::opted_out},
  };
  for (const auto& [word, status] : cases) {
    const std::string body = std::string(R"({"herald_id":123,"message_id":"sbx-9","status":")") + word +
                             R"(","error_code":"550"})";
    const auto rs = a->parse_receipt(receipt(body, ""));
    ASSERT_EQ(rs.size(), 1u) << word;
    EXPECT_EQ(rs[0].status, status) << word;
    EXPECT_EQ(rs[0].provider_status, word);
    EXPECT_EQ(rs[0].notification_id, 123);
    EXPECT_EQ(rs[0].provider_message_id, "sbx-9");
    EXPECT_EQ(rs[0].error_code, "550");
  }
  const auto many = a->parse_receipt(
      receipt(R"([{"herald_id":"5","status":"delivered"},{"herald_id":6,"status":"failed","error_code":30003}])", ""));
  ASSERT_EQ(many.size(), 2u);
  EXPECT_EQ(many[0].notification_id, 5);
  EXPECT_EQ(many[1].notification_id, 6);
  EXPECT_EQ(many[1].error_code, "30003");
  EXPECT_EQ(a->parse_receipt(receipt(R"({"status":"delivered"})", ""))[0].notification_id, 0);
  EXPECT_THROW((void)a->parse_receipt(receipt("not json", "")), std::invalid_argument);
  EXPECT_THROW((void)a->parse_receipt(receipt(R"({"herald_id":1})", "")), std::invalid_argument);
  EXPECT_THROW((void)a->parse_receipt(receipt("42", "")), std::invalid_argument);
}

TEST(SandboxAdapter, LookupRequestsById) {
  auto a = make_adapter(sandbox_config());
  const Notification n = note(77, R"({"email":"a@example.com"})");
  const std::string text = "hi", id = "sbx-12", none;
  const auto by_id = a->build_lookup(LookupContext{n, text, id, 0});
  ASSERT_TRUE(by_id.has_value());
  EXPECT_EQ(by_id->method, "GET");
  EXPECT_EQ(by_id->url, "http://127.0.0.1:8025/v1/box/messages/sbx-12");
  const auto by_key = a->build_lookup(LookupContext{n, text, none, 0});
  ASSERT_TRUE(by_key.has_value());
  EXPECT_EQ(by_key->url, "http://127.0.0.1:8025/v1/box/messages?idempotency_key=herald-77");
}

TEST(SandboxAdapter, LookupAnswersFoundNotFoundAndUnknown) {
  auto a = make_adapter(sandbox_config());
  const Notification n = note(77, R"({"email":"a@example.com"})");
  const std::string text = "hi", id = "sbx-12", none;
  const LookupContext with_id{n, text, id, 0}, without{n, text, none, 0};

  LookupResult one = a->parse_lookup(answer(200, R"({"id":"sbx-12","status":"bounced_hard","error_code":"550"})"), with_id);
  EXPECT_EQ(one.found, LookupResult::Found::yes);
  EXPECT_EQ(one.provider_message_id, "sbx-12");
  EXPECT_EQ(one.receipt.notification_id, 77);
  EXPECT_EQ(one.receipt.status, ReceiptStatus::bounced_hard);
  EXPECT_EQ(one.receipt.error_code, "550");
  EXPECT_EQ(a->parse_lookup(answer(200, R"({"id":"x","status":"accepted"})"), with_id).receipt.status, ReceiptStatus::progress);
  EXPECT_EQ(a->parse_lookup(answer(200, R"({"id":"x","status":"sent"})"), with_id).receipt.status, ReceiptStatus::progress);

  LookupResult listed = a->parse_lookup(answer(200, R"({"messages":[{"id":"sbx-13","status":"delivered"}]})"), without);
  EXPECT_EQ(listed.found, LookupResult::Found::yes);
  EXPECT_EQ(listed.provider_message_id, "sbx-13");
  EXPECT_EQ(listed.receipt.status, ReceiptStatus::delivered);
  EXPECT_EQ(a->parse_lookup(answer(200, R"({"messages":[]})"), without).found, LookupResult::Found::no);
  EXPECT_EQ(a->parse_lookup(answer(404, R"({"error":{"code":"not_found"}})"), with_id).found, LookupResult::Found::no);

  http::Response down;
  down.transport_error = "Connection refused";
  LookupResult failed = a->parse_lookup(down, with_id);
  EXPECT_EQ(failed.found, LookupResult::Found::unknown);
  EXPECT_NE(failed.error.find("Connection refused"), std::string::npos);
  EXPECT_EQ(a->parse_lookup(answer(503, "busy"), with_id).found, LookupResult::Found::unknown);
  EXPECT_FALSE(a->parse_lookup(answer(503, "busy"), with_id).error.empty());
  EXPECT_EQ(a->parse_lookup(answer(200, "<html>"), with_id).found, LookupResult::Found::unknown);
}

// ---- the webhook kind -----------------------------------------------------------------------------

TEST(WebhookAdapter, SignsEveryRequestWhenASecretIsSet) {
  auto a = make_adapter(webhook_config("hook-secret"));
  const Notification n = note(9, R"({"id":"svc"})");
  PlanStep plan;
  plan.channel = "webhook";
  const std::string text = "order 7 shipped";
  const http::Request req = a->build(SendContext{n, plan, text, 1, false, t0 * 1000 + 999, ""});
  EXPECT_EQ(req.url, "http://127.0.0.1:9000/in");
  const std::string signature = header_value(req, "X-Herald-Signature");
  const std::string mac = crypto::hex(crypto::hmac_sha256("hook-secret", "1700000000." + req.body));
  EXPECT_EQ(signature, "t=1700000000,v1=" + mac);
  EXPECT_EQ(nlohmann::json::parse(req.body)["text"], "order 7 shipped");
  EXPECT_TRUE(a->has_receipts());
  EXPECT_EQ(a->address(n), "");

  auto plain = make_adapter(webhook_config());
  const http::Request unsigned_req = plain->build(SendContext{n, plan, text, 1, false, t0 * 1000, ""});
  EXPECT_EQ(header_value(unsigned_req, "X-Herald-Signature"), "");
  EXPECT_FALSE(plain->has_receipts());
  EXPECT_EQ(plain->verify_receipt(receipt(receipt_body, "t=1700000000,v1=" + receipt_mac)).status, 404);
  EXPECT_FALSE(plain->build_lookup(LookupContext{n, text, text, 0}).has_value());
}

TEST(WebhookAdapter, ReceiptsAreVerifiedAndParsedLikeTheSandbox) {
  auto a = make_adapter(webhook_config("hook-secret"));
  const std::string body = R"({"herald_id":11,"message_id":"ext-1","status":"opted_out"})";
  EXPECT_EQ(a->verify_receipt(receipt(body, sig::sign("hook-secret", t0, body))).status, 0);
  EXPECT_EQ(a->verify_receipt(receipt(body, "")).status, 401);
  EXPECT_EQ(a->verify_receipt(receipt(body, "t=1700000000")).status, 401);
  EXPECT_EQ(a->verify_receipt(receipt(body, sig::sign("sandbox-secret", t0, body))).status, 403);
  EXPECT_EQ(a->verify_receipt(receipt(body, sig::sign("hook-secret", t0 - 400, body))).status, 403);
  const auto rs = a->parse_receipt(receipt(body, ""));
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].notification_id, 11);
  EXPECT_EQ(rs[0].status, ReceiptStatus::opted_out);
  EXPECT_EQ(a->classify(answer(500)).kind, OutcomeKind::retryable);
  EXPECT_EQ(a->classify(answer(200)).kind, OutcomeKind::accepted);
  EXPECT_EQ(a->classify(answer(404)).kind, OutcomeKind::permanent);
}

/// A step's message carries its parent's id; the callback URL the engine gave carries the step's.
TEST(WebhookAdapter, OneReceiptPostedToACallbackUrlBelongsToItsHid) {
  for (const auto& config : {webhook_config("hook-secret"), sandbox_config()}) {
    auto a = make_adapter(config);
    InboundRequest r = receipt(R"({"herald_id":100,"message_id":"ext-1","status":"delivered"})", "");
    r.url += "?hid=107";
    r.query = "hid=107";
    const auto one = a->parse_receipt(r);
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].notification_id, 107);
    // Several receipts in one post keep their own ids: the URL cannot say which is which.
    r.body = R"([{"herald_id":100,"status":"delivered"},{"herald_id":200,"status":"failed"}])";
    const auto many = a->parse_receipt(r);
    ASSERT_EQ(many.size(), 2u);
    EXPECT_EQ(many[0].notification_id, 100);
    EXPECT_EQ(many[1].notification_id, 200);
    // A malformed hid is no hid.
    r.body = R"({"herald_id":100,"status":"delivered"})";
    r.query = "hid=10x7";
    r.url = "http://engine.test/receipts/box?hid=10x7";
    EXPECT_EQ(a->parse_receipt(r)[0].notification_id, 100);
  }
}
