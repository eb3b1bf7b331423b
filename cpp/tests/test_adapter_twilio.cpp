// The twilio adapter: the Messages request, Twilio's error codes, X-Twilio-Signature receipts and
// message lookups. Pure logic: requests are built and inspected, answers crafted.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "herald/crypto.hpp"
#include "herald/errors.hpp"
#include "herald/provider.hpp"

#include "adapter_test_support.hpp"

using namespace herald;
using herald::adapter_test::answer;

namespace {

const std::string token = "tw-secret-token";
const std::string callback_url = "https://hooks.example.com/receipts/sms?hid=42";

ProviderConfig twilio_config() {
  ProviderConfig c;
  c.name = "sms";
  c.kind = "twilio";
  c.settings["account_sid"] = "AC0123";
  c.settings["from"] = "+15550100";
  c.secrets["auth_token"] = token;
  return c;
}

Notification otp(Id id, std::string phone = "+15551230001") {
  Notification n;
  n.id = id;
  n.type = "otp";
  n.recipient_json = R"({"id":"u1","phone":")" + phone + R"("})";
  n.data_json = R"({"code":"4242"})";
  return n;
}

std::string twilio_error(int code, const std::string& message, int status = 400) {
  return R"({"code":)" + std::to_string(code) + R"(,"message":")" + message +
         R"(","more_info":"https://www.twilio.com/docs/errors/)" + std::to_string(code) +
         R"(","status":)" + std::to_string(status) + "}";
}

InboundRequest callback(std::string body, std::string signature, std::string url = callback_url) {
  InboundRequest r;
  r.method = "POST";
  r.url = std::move(url);
  const auto q = r.url.find('?');
  r.path = "/receipts/sms";
  r.query = q == std::string::npos ? "" : r.url.substr(q + 1);
  r.headers.emplace_back("content-type", "application/x-www-form-urlencoded");
  if (!signature.empty()) r.headers.emplace_back("x-twilio-signature", std::move(signature));
  r.body = std::move(body);
  return r;
}

std::map<std::string, std::string> form(const std::string& body) {
  std::map<std::string, std::string> out;
  for (auto& [k, v] : crypto::form_decode(body)) out[k] = v;
  return out;
}

void expect_no_secret(const std::string& text) {
  EXPECT_EQ(text.find(token), std::string::npos) << text;
}

}  // namespace

TEST(TwilioAdapter, FactoryRequiresSettingsAndSecretsWithoutQuotingThem) {
  EXPECT_NO_THROW((void)make_adapter(twilio_config()));
  for (const char* missing : {"account_sid", "from"}) {
    ProviderConfig c = twilio_config();
    c.settings.erase(missing);
    try {
      (void)make_adapter(c);
      ADD_FAILURE() << "no error without " << missing;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("providers.sms.settings.") + missing), std::string::npos) << e.what();
      expect_no_secret(e.what());
    }
  }
  ProviderConfig c = twilio_config();
  c.secrets.clear();
  try {
    (void)make_adapter(c);
    ADD_FAILURE() << "no error without auth_token";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "providers.sms.secrets.auth_token: is required");
  }
  ProviderConfig service = twilio_config();
  service.settings.erase("from");
  service.settings["messaging_service_sid"] = "MG9";
  EXPECT_NO_THROW((void)make_adapter(service));
}

TEST(TwilioAdapter, BuildsTheMessagesRequest) {
  auto a = make_adapter(twilio_config());
  const Notification n = otp(42);
  PlanStep plan;
  plan.channel = "sms";
  const std::string text = "Your code is 4242 & more";
  const http::Request req = a->build(SendContext{n, plan, text, 1, false, 0, callback_url});
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.url, "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages.json");
  EXPECT_EQ(req.basic_auth, "AC0123:" + token);
  const std::vector<std::string> want = {"Content-Type: application/x-www-form-urlencoded",
                                         "Idempotency-Key: herald-42", "X-Herald-Id: 42"};
  for (const auto& h : want) EXPECT_NE(std::find(req.headers.begin(), req.headers.end(), h), req.headers.end()) << h;
  for (const auto& h : req.headers) expect_no_secret(h);
  EXPECT_EQ(req.body, "To=%2B15551230001&From=%2B15550100&Body=Your+code+is+4242+%26+more&StatusCallback=" +
                          crypto::form_encode(callback_url));
  const auto fields = form(req.body);
  EXPECT_EQ(fields.at("To"), "+15551230001");
  EXPECT_EQ(fields.at("Body"), text);
  EXPECT_EQ(fields.at("StatusCallback"), callback_url);
  EXPECT_EQ(a->address(n), "+15551230001");
  EXPECT_TRUE(a->has_receipts());

  // Receipts off: no StatusCallback. A sandbox URL and a messaging service instead of From.
  ProviderConfig c = twilio_config();
  c.url = "http://127.0.0.1:8025/";
  c.settings.erase("from");
  c.settings["messaging_service_sid"] = "MG9";
  const http::Request quiet = make_adapter(c)->build(SendContext{n, plan, text, 1, false, 0, ""});
  EXPECT_EQ(quiet.url, "http://127.0.0.1:8025/2010-04-01/Accounts/AC0123/Messages.json");
  const auto qf = form(quiet.body);
  EXPECT_EQ(qf.count("StatusCallback"), 0u);
  EXPECT_EQ(qf.count("From"), 0u);
  EXPECT_EQ(qf.at("MessagingServiceSid"), "MG9");
}

TEST(TwilioAdapter, ClassifiesAcceptance) {
  auto a = make_adapter(twilio_config());
  const Outcome created = a->classify(answer(201, R"({"sid":"SM0001","status":"queued"})"));
  EXPECT_EQ(created.kind, OutcomeKind::accepted);
  EXPECT_EQ(created.provider_message_id, "SM0001");
  EXPECT_EQ(a->classify(answer(200, R"({"sid":"SM0002","status":"accepted"})")).provider_message_id, "SM0002");
}

TEST(TwilioAdapter, ClassifiesErrorCodes) {
  auto a = make_adapter(twilio_config());
  const Outcome invalid = a->classify(answer(400, twilio_error(21211, "The 'To' number is not a valid phone number.")));
  EXPECT_EQ(invalid.kind, OutcomeKind::recipient_invalid);
  EXPECT_EQ(invalid.error, "HTTP 400: twilio 21211 The 'To' number is not a valid phone number.");
  EXPECT_EQ(a->classify(answer(400, twilio_error(21614, "not a mobile number"))).kind, OutcomeKind::recipient_invalid);
  const Outcome stop = a->classify(answer(400, twilio_error(21610, "Attempt to send to unsubscribed recipient")));
  EXPECT_EQ(stop.kind, OutcomeKind::recipient_opted_out);
  EXPECT_NE(stop.error.find("21610"), std::string::npos);
  const Outcome auth = a->classify(answer(401, twilio_error(20003, "Authenticate", 401)));
  EXPECT_EQ(auth.kind, OutcomeKind::permanent);
  EXPECT_EQ(auth.error, "HTTP 401: twilio 20003 Authenticate");
  expect_no_secret(auth.error);
  EXPECT_EQ(a->classify(answer(400, twilio_error(21606, "From is not a valid number"))).kind, OutcomeKind::permanent);
  EXPECT_EQ(a->classify(answer(404, "not json")).kind, OutcomeKind::permanent);
  EXPECT_EQ(a->classify(answer(404, "not json")).error, "HTTP 404: not json");
  // string codes are read too
  EXPECT_EQ(a->classify(answer(400, R"({"code":"21211","message":"x"})")).kind, OutcomeKind::recipient_invalid);
}

TEST(TwilioAdapter, ClassifiesRetryableAnswers) {
  auto a = make_adapter(twilio_config());
  const Outcome limited = a->classify(answer(429, twilio_error(20429, "Too Many Requests", 429), {{"retry-after", "7"}}));
  EXPECT_EQ(limited.kind, OutcomeKind::retryable);
  EXPECT_EQ(limited.retry_after_ms, 7000);
  const Outcome busy = a->classify(answer(503, "upstream down"));
  EXPECT_EQ(busy.kind, OutcomeKind::retryable);
  EXPECT_EQ(busy.retry_after_ms, -1);
  EXPECT_EQ(a->classify(answer(500, twilio_error(20500, "Internal Server Error", 500))).kind, OutcomeKind::retryable);
  http::Response refused;
  refused.transport_error = "Connection refused";
  EXPECT_EQ(a->classify(refused).kind, OutcomeKind::retryable);
}

// ---- receipts -----------------------------------------------------------------------------------------

TEST(TwilioAdapter, VerifiesTheCallbackSignature) {
  auto a = make_adapter(twilio_config());
  const std::string body = "MessageSid=SM123&MessageStatus=delivered&AccountSid=AC0123&To=%2B15551230001";
  // base64(HMAC-SHA1(token, url + sorted key+value)), computed with Python's hmac.
  const std::string python_signature = "9vIXSyHxitA/jVhTBUKJ8d/zyas=";
  // ... and by hand through the crypto functions.
  const std::string by_hand = crypto::base64(crypto::hmac_sha1(
      token, callback_url + "AccountSidAC0123MessageSidSM123MessageStatusdeliveredTo+15551230001"));
  EXPECT_EQ(by_hand, python_signature);
  EXPECT_EQ(a->verify_receipt(callback(body, python_signature)).status, 0);

  const ReceiptCheck missing = a->verify_receipt(callback(body, ""));
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(a->verify_receipt(callback(body, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")).status, 403);
  const std::string wrong_key =
      crypto::base64(crypto::hmac_sha1("not-the-token", callback_url + "AccountSidAC0123MessageSidSM123MessageStatusdeliveredTo+15551230001"));
  const ReceiptCheck forged = a->verify_receipt(callback(body, wrong_key));
  EXPECT_EQ(forged.status, 403);
  expect_no_secret(forged.reason);
  // a tampered body, or the same body posted to another notification's URL
  EXPECT_EQ(a->verify_receipt(callback("MessageSid=SM123&MessageStatus=failed&AccountSid=AC0123&To=%2B15551230001",
                                       python_signature)).status, 403);
  EXPECT_EQ(a->verify_receipt(callback(body, python_signature, "https://hooks.example.com/receipts/sms?hid=43")).status, 403);
}

// Twilio's validators (twilio-python RequestValidator.validate, twilio-node validateRequest) accept
// a signature over the URL with its port removed or with the scheme's default port added; which
// form Twilio signs depends on how the StatusCallback URL was written.
TEST(TwilioAdapter, SignatureVerifiesWithAndWithoutTheDefaultPort) {
  auto a = make_adapter(twilio_config());
  const std::string body = "MessageSid=SM7&MessageStatus=delivered&AccountSid=AC0123";
  const std::string params = "AccountSidAC0123MessageSidSM7MessageStatusdelivered";
  const std::string bare = "https://hooks.example.com/receipts/sms?hid=1";
  const std::string ported = "https://hooks.example.com:443/receipts/sms?hid=1";
  auto sign = [&](const std::string& url, const std::string& key = token) {
    return crypto::base64(crypto::hmac_sha1(key, url + params));
  };
  // The same values from Python's hmac, so the helper above is checked too.
  const std::string sig_bare = "9LIGNKw5h+rVFe4ZnzWslIdf2tU=";
  const std::string sig_ported = "yJshrS1uH65bXunRXR5ZAizxn9Y=";
  ASSERT_EQ(sign(bare), sig_bare);
  ASSERT_EQ(sign(ported), sig_ported);

  // Signed over one form, arriving at the other: both directions, and each form at itself.
  EXPECT_EQ(a->verify_receipt(callback(body, sig_bare, ported)).status, 0);
  EXPECT_EQ(a->verify_receipt(callback(body, sig_ported, bare)).status, 0);
  EXPECT_EQ(a->verify_receipt(callback(body, sig_bare, bare)).status, 0);
  EXPECT_EQ(a->verify_receipt(callback(body, sig_ported, ported)).status, 0);
  EXPECT_EQ(a->parse_receipt(callback(body, sig_bare, ported))[0].notification_id, 1);

  // Wrong signatures stay wrong in every form.
  for (const std::string& url : {bare, ported}) {
    for (const std::string& sig : {sign(bare, "not-the-token"), sign(ported, "not-the-token"),
                                   std::string("AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                                   sign("https://hooks.example.com/receipts/sms?hid=2"),
                                   sign("https://hooks.example.com:443/receipts/sms?hid=2")}) {
      const ReceiptCheck c = a->verify_receipt(callback(body, sig, url));
      EXPECT_EQ(c.status, 403) << url << " " << sig;
      EXPECT_EQ(c.reason, "X-Twilio-Signature does not match");
    }
    // a tampered body
    EXPECT_EQ(a->verify_receipt(callback("MessageSid=SM7&MessageStatus=failed&AccountSid=AC0123", sig_bare, url)).status, 403);
  }
  // https's default port is 443, not 80.
  EXPECT_EQ(sign("https://hooks.example.com:80/receipts/sms?hid=1"), "dZ7+dBBfoue1j8dq6U6VNafAXfM=");
  EXPECT_EQ(a->verify_receipt(callback(body, "dZ7+dBBfoue1j8dq6U6VNafAXfM=", bare)).status, 403);

  // http: the default port is 80.
  const std::string http_bare = "http://127.0.0.1/receipts/sms?hid=1";
  const std::string http_ported = "http://127.0.0.1:80/receipts/sms?hid=1";
  EXPECT_EQ(sign(http_bare), "t3dQdB/RZpuLcsAgPTNa9LmJML4=");
  EXPECT_EQ(sign(http_ported), "SjHcyj8r4M+08WK59KS+CPWpUx0=");
  EXPECT_EQ(a->verify_receipt(callback(body, "t3dQdB/RZpuLcsAgPTNa9LmJML4=", http_ported)).status, 0);
  EXPECT_EQ(a->verify_receipt(callback(body, "SjHcyj8r4M+08WK59KS+CPWpUx0=", http_bare)).status, 0);
  EXPECT_EQ(a->verify_receipt(callback(body, sign("http://127.0.0.1:443/receipts/sms?hid=1"), http_bare)).status, 403);

  // Another port: signed as written verifies; like twilio-python's remove_port, the port-less form
  // is accepted too; a different port is not.
  const std::string other = "https://hooks.example.com:8443/receipts/sms?hid=1";
  EXPECT_EQ(sign(other), "iyv4zyyVz+8TUHw/9Adf1LMwHCw=");
  EXPECT_EQ(a->verify_receipt(callback(body, "iyv4zyyVz+8TUHw/9Adf1LMwHCw=", other)).status, 0);
  EXPECT_EQ(a->verify_receipt(callback(body, sig_bare, other)).status, 0);
  EXPECT_EQ(a->verify_receipt(callback(body, sig_ported, other)).status, 403);
  EXPECT_EQ(a->verify_receipt(callback(body, "iyv4zyyVz+8TUHw/9Adf1LMwHCw=", bare)).status, 403);
  EXPECT_EQ(a->verify_receipt(callback(body, "iyv4zyyVz+8TUHw/9Adf1LMwHCw=", ported)).status, 403);

  // User info and IPv6 literals: the port is the host's, not a colon in user:password or [::1].
  const std::string v6 = "https://[::1]/receipts/sms?hid=1";
  EXPECT_EQ(a->verify_receipt(callback(body, sign("https://[::1]:443/receipts/sms?hid=1"), v6)).status, 0);
  EXPECT_EQ(a->verify_receipt(callback(body, sign(v6), "https://[::1]:443/receipts/sms?hid=1")).status, 0);
  const std::string user = "https://u:p@hooks.example.com/receipts/sms?hid=1";
  EXPECT_EQ(a->verify_receipt(callback(body, sign("https://u:p@hooks.example.com:443/receipts/sms?hid=1"), user)).status, 0);
  EXPECT_EQ(a->verify_receipt(callback(body, sign("https://u@hooks.example.com/receipts/sms?hid=1"), user)).status, 403);
}

TEST(TwilioAdapter, ParsesEveryCallbackStatus) {
  auto a = make_adapter(twilio_config());
  struct Case {
    const char* status;
    const char* error_code;
    ReceiptStatus want;
  };
  const Case cases[] = {
      {"queued", "", ReceiptStatus::progress},       {"accepted", "", ReceiptStatus::progress},
      {"sending", "", ReceiptStatus::progress},      {"sent", "", ReceiptStatus::progress},
      {"scheduled", "", ReceiptStatus::progress},    {"delivered", "", ReceiptStatus::delivered},
      {"read", "", ReceiptStatus::opened},           {"undelivered", "30003", ReceiptStatus::failed},
      {"failed", "30008", ReceiptStatus::failed},    {"undelivered", "30005", ReceiptStatus::bounced_hard},
      {"failed", "30006", ReceiptStatus::bounced_hard}, {"undelivered", "21610", ReceiptStatus::opted_out},
  };
  for (const Case& c : cases) {
    std::string body = "SmsSid=SM9&MessageSid=SM9&MessageStatus=" + std::string(c.status) + "&AccountSid=AC0123";
    if (*c.error_code != '\0') body += "&ErrorCode=" + std::string(c.error_code);
    const auto rs = a->parse_receipt(callback(body, "x"));
    ASSERT_EQ(rs.size(), 1u);
    EXPECT_EQ(rs[0].status, c.want) << c.status << " " << c.error_code;
    EXPECT_EQ(rs[0].provider_status, c.status);
    EXPECT_EQ(rs[0].error_code, c.error_code);
    EXPECT_EQ(rs[0].provider_message_id, "SM9");
    EXPECT_EQ(rs[0].notification_id, 42);
  }
  // the id comes from the query; the URL is read when the query field is empty
  InboundRequest no_query = callback("MessageSid=SM9&MessageStatus=sent", "x", "https://h.example/receipts/sms?a=1&hid=77");
  no_query.query.clear();
  EXPECT_EQ(a->parse_receipt(no_query)[0].notification_id, 77);
  EXPECT_EQ(a->parse_receipt(callback("MessageSid=SM9&MessageStatus=sent", "x", "https://h.example/receipts/sms"))[0].notification_id, 0);
  EXPECT_THROW((void)a->parse_receipt(callback("MessageSid=SM9", "x")), std::invalid_argument);
}

// ---- lookups --------------------------------------------------------------------------------------------

TEST(TwilioAdapter, BuildsLookups) {
  auto a = make_adapter(twilio_config());
  const Notification n = otp(42);
  const std::string text = "Your code is 4242", sid = "SM0001", none;
  const auto by_sid = a->build_lookup(LookupContext{n, text, sid, 0});
  ASSERT_TRUE(by_sid.has_value());
  EXPECT_EQ(by_sid->method, "GET");
  EXPECT_EQ(by_sid->url, "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages/SM0001.json");
  EXPECT_EQ(by_sid->basic_auth, "AC0123:" + token);
  const auto by_to = a->build_lookup(LookupContext{n, text, none, 0});
  ASSERT_TRUE(by_to.has_value());
  EXPECT_EQ(by_to->url, "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages.json?To=%2B15551230001&PageSize=20");
  EXPECT_EQ(by_to->basic_auth, "AC0123:" + token);
  Notification no_phone = otp(43);
  no_phone.recipient_json = R"({"id":"u"})";
  EXPECT_FALSE(a->build_lookup(LookupContext{no_phone, text, none, 0}).has_value());
}

TEST(TwilioAdapter, ParsesLookups) {
  auto a = make_adapter(twilio_config());
  const Notification n = otp(42);
  const std::string text = "Your code is 4242", sid = "SM0001", none;
  const LookupContext with_sid{n, text, sid, 0}, without{n, text, none, 0};

  LookupResult one = a->parse_lookup(
      answer(200, R"({"sid":"SM0001","to":"+15551230001","body":"Your code is 4242","status":"undelivered","error_code":30003})"),
      with_sid);
  EXPECT_EQ(one.found, LookupResult::Found::yes);
  EXPECT_EQ(one.provider_message_id, "SM0001");
  EXPECT_EQ(one.receipt.notification_id, 42);
  EXPECT_EQ(one.receipt.status, ReceiptStatus::failed);
  EXPECT_EQ(one.receipt.error_code, "30003");
  EXPECT_EQ(a->parse_lookup(answer(200, R"({"sid":"SM0001","status":"delivered","error_code":null})"), with_sid).receipt.status,
            ReceiptStatus::delivered);
  EXPECT_EQ(a->parse_lookup(answer(404, twilio_error(20404, "not found", 404)), with_sid).found, LookupResult::Found::no);

  const std::string page = R"({"messages":[
      {"sid":"SM0003","to":"+15551230001","body":"Your code is 9999","status":"delivered"},
      {"sid":"SM0002","to":"+15559999999","body":"Your code is 4242","status":"delivered"},
      {"sid":"SM0001","to":"+15551230001","body":"Your code is 4242","status":"sent"}]})";
  LookupResult listed = a->parse_lookup(answer(200, page), without);
  EXPECT_EQ(listed.found, LookupResult::Found::yes);
  EXPECT_EQ(listed.provider_message_id, "SM0001");
  EXPECT_EQ(listed.receipt.status, ReceiptStatus::progress);
  EXPECT_EQ(a->parse_lookup(answer(200, R"({"messages":[]})"), without).found, LookupResult::Found::no);
  const std::string other_text = "something else";
  EXPECT_EQ(a->parse_lookup(answer(200, page), LookupContext{n, other_text, none, 0}).found, LookupResult::Found::no);

  http::Response timeout;
  timeout.timed_out = true;
  LookupResult t = a->parse_lookup(timeout, with_sid);
  EXPECT_EQ(t.found, LookupResult::Found::unknown);
  EXPECT_EQ(t.error, "timeout");
  LookupResult busy = a->parse_lookup(answer(503, "busy"), without);
  EXPECT_EQ(busy.found, LookupResult::Found::unknown);
  EXPECT_FALSE(busy.error.empty());
  EXPECT_EQ(a->parse_lookup(answer(200, "<html>"), with_sid).found, LookupResult::Found::unknown);
  const LookupResult denied = a->parse_lookup(answer(401, twilio_error(20003, "Authenticate", 401)), with_sid);
  EXPECT_EQ(denied.found, LookupResult::Found::unknown);
  expect_no_secret(denied.error);
}

TEST(TwilioAdapter, AnOlderMessageWithTheSameTextIsNotTheAttemptInDoubt) {
  auto a = make_adapter(twilio_config());
  const Notification n = otp(42);
  const std::string text = "Your code is 4242", none;
  // 2026-11-21 20:00:00 UTC and an hour earlier.
  const std::int64_t started = 1'795'291'200'000;
  const std::string page = R"({"messages":[
      {"sid":"SM0009","to":"+15551230001","body":"Your code is 4242","status":"delivered",
       "date_created":"Sat, 21 Nov 2026 19:00:00 +0000"}]})";
  EXPECT_EQ(a->parse_lookup(answer(200, page), LookupContext{n, text, none, started}).found, LookupResult::Found::no);
  const std::string fresh = R"({"messages":[
      {"sid":"SM0010","to":"+15551230001","body":"Your code is 4242","status":"sent",
       "date_created":"Sat, 21 Nov 2026 20:00:01 +0000"}]})";
  LookupResult found = a->parse_lookup(answer(200, fresh), LookupContext{n, text, none, started});
  EXPECT_EQ(found.found, LookupResult::Found::yes);
  EXPECT_EQ(found.provider_message_id, "SM0010");
}
