// The sendgrid adapter: mail/send (single and batched with substitutions), its classification and
// the signed Event Webhook. Pure logic: requests are built and inspected, answers crafted.
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>

#include <nlohmann/json.hpp>

#include "herald/crypto.hpp"
#include "herald/errors.hpp"
#include "herald/provider.hpp"

#include "adapter_test_support.hpp"

using namespace herald;
using herald::adapter_test::answer;
using json = nlohmann::json;

namespace {

const std::string api_key = "SG.very-secret-api-key";
constexpr std::int64_t t0 = 1'700'000'000;

ProviderConfig sendgrid_config(std::string verification_key = {}) {
  ProviderConfig c;
  c.name = "mail";
  c.kind = "sendgrid";
  c.settings["from"] = "noreply@herald.test";
  c.settings["from_name"] = "Herald";
  c.settings["subject"] = "From herald";
  c.secrets["api_key"] = api_key;
  if (!verification_key.empty()) c.secrets["verification_key"] = std::move(verification_key);
  return c;
}

Notification mail(Id id, const std::string& email, std::string data = R"({"name":"Ada"})") {
  Notification n;
  n.id = id;
  n.type = "welcome";
  n.recipient_json = R"({"id":"u","email":")" + email + R"("})";
  n.data_json = std::move(data);
  return n;
}

bool has_header(const http::Request& r, const std::string& line) {
  return std::find(r.headers.begin(), r.headers.end(), line) != r.headers.end();
}

void expect_no_secret(const std::string& text) { EXPECT_EQ(text.find(api_key), std::string::npos) << text; }

/// A batch of notifications sharing one plan; the contexts refer into the deques, which keep addresses stable.
struct Batch {
  PlanStep plan;
  std::deque<Notification> notes;
  std::deque<std::string> texts;
  std::vector<SendContext> ctxs;
  void add(Notification n) {
    notes.push_back(std::move(n));
    texts.push_back(render_template(plan.template_text, notes.back().data_json));
    ctxs.push_back(SendContext{notes.back(), plan, texts.back(), 1, false, 0, ""});
  }
};

/// The Event Webhook's signature headers over timestamp + body, signed with `key`.
InboundRequest event_post(const crypto::PrivateKey& key, std::string body, std::int64_t ts = t0, std::int64_t now_s = t0) {
  InboundRequest r;
  r.method = "POST";
  r.url = "https://engine.test/receipts/mail";
  r.path = "/receipts/mail";
  r.headers.emplace_back("content-type", "application/json");
  const std::string timestamp = std::to_string(ts);
  r.headers.emplace_back("x-twilio-email-event-webhook-signature", crypto::base64(key.sign_es256(timestamp + body, false)));
  r.headers.emplace_back("x-twilio-email-event-webhook-timestamp", timestamp);
  r.body = std::move(body);
  r.now_ms = now_s * 1000;
  return r;
}

InboundRequest without_header(InboundRequest r, const std::string& name) {
  r.headers.erase(std::remove_if(r.headers.begin(), r.headers.end(), [&](const auto& h) { return h.first == name; }),
                  r.headers.end());
  return r;
}

}  // namespace

TEST(SendgridAdapter, FactoryRequiresSettingsAndSecretsWithoutQuotingThem) {
  EXPECT_NO_THROW((void)make_adapter(sendgrid_config()));
  ProviderConfig c = sendgrid_config();
  c.settings.erase("from");
  EXPECT_THROW((void)make_adapter(c), ConfigError);
  c = sendgrid_config();
  c.settings["from"] = "not-an-address";
  EXPECT_THROW((void)make_adapter(c), ConfigError);
  c = sendgrid_config();
  c.secrets.erase("api_key");
  try {
    (void)make_adapter(c);
    ADD_FAILURE() << "no error without api_key";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "providers.mail.secrets.api_key: is required");
  }
  c = sendgrid_config("%%%not-a-key-secret%%%");
  try {
    (void)make_adapter(c);
    ADD_FAILURE() << "a bad verification key was taken";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).find("not-a-key-secret"), std::string::npos) << e.what();
    expect_no_secret(e.what());
  }
}

TEST(SendgridAdapter, BuildsOneMail) {
  auto a = make_adapter(sendgrid_config());
  const Notification n = mail(42, "ada@example.com");
  PlanStep plan;
  plan.channel = "email";
  plan.template_text = "Hello {name}";
  const std::string text = "Hello Ada";
  const http::Request req = a->build(SendContext{n, plan, text, 1, false, 0, "https://e/receipts/mail?hid=42"});
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.url, "https://api.sendgrid.com/v3/mail/send");
  EXPECT_TRUE(has_header(req, "Authorization: Bearer " + api_key));
  EXPECT_TRUE(has_header(req, "Content-Type: application/json"));
  const json body = json::parse(req.body);
  ASSERT_EQ(body["personalizations"].size(), 1u);
  const json& p = body["personalizations"][0];
  EXPECT_EQ(p["to"], json::parse(R"([{"email":"ada@example.com"}])"));
  EXPECT_EQ(p["custom_args"]["herald_id"], "42");
  EXPECT_FALSE(p.contains("substitutions"));
  EXPECT_EQ(body["from"], json::parse(R"({"email":"noreply@herald.test","name":"Herald"})"));
  EXPECT_EQ(body["subject"], "From herald");
  EXPECT_EQ(body["content"], json::parse(R"([{"type":"text/plain","value":"Hello Ada"}])"));
  EXPECT_EQ(a->address(n), "ada@example.com");
  EXPECT_FALSE(a->has_receipts());
  EXPECT_FALSE(a->build_lookup(LookupContext{n, text, text, 0}).has_value());
}

TEST(SendgridAdapter, SubjectComesFromDataThenSettingsThenType) {
  PlanStep plan;
  plan.channel = "email";
  const std::string text = "x";
  auto with_setting = make_adapter(sendgrid_config());
  const Notification own = mail(1, "a@example.com", R"({"subject":"Your invoice"})");
  EXPECT_EQ(json::parse(with_setting->build(SendContext{own, plan, text, 1, false, 0, ""}).body)["subject"], "Your invoice");
  const Notification numeric = mail(1, "a@example.com", R"({"subject":5})");
  EXPECT_EQ(json::parse(with_setting->build(SendContext{numeric, plan, text, 1, false, 0, ""}).body)["subject"], "From herald");
  ProviderConfig c = sendgrid_config();
  c.settings.erase("subject");
  c.settings.erase("from_name");
  c.url = "http://127.0.0.1:8025/";
  auto bare = make_adapter(c);
  const Notification plain = mail(1, "a@example.com");
  const http::Request req = bare->build(SendContext{plain, plan, text, 1, false, 0, ""});
  EXPECT_EQ(req.url, "http://127.0.0.1:8025/v3/mail/send");
  const json body = json::parse(req.body);
  EXPECT_EQ(body["subject"], "welcome");
  EXPECT_EQ(body["from"], json::parse(R"({"email":"noreply@herald.test"})"));
}

// SendGrid's content array: text/plain first, then text/html; the step's subject over the rest.
TEST(SendgridAdapter, SendsTheStepsSubjectAndHtmlAfterTheText) {
  auto a = make_adapter(sendgrid_config());
  const Notification n = mail(42, "ada@example.com", R"({"name":"Ada","subject":"from data"})");
  PlanStep plan;
  plan.channel = "email";
  plan.template_text = "Hello {name}";
  plan.content.subject = "Welcome, {name}";
  plan.content.html = "<p>Hello <b>{name}</b></p>";
  const std::string text = "Hello Ada";
  const json body = json::parse(a->build(SendContext{n, plan, text, 1, false, 0, ""}).body);
  EXPECT_EQ(body["subject"], "Welcome, Ada");
  EXPECT_EQ(body["content"], json::parse(R"([{"type":"text/plain","value":"Hello Ada"},
                                             {"type":"text/html","value":"<p>Hello <b>Ada</b></p>"}])"));
  plan.content.html = "<p>{missing}</p>";
  try {
    (void)a->build(SendContext{n, plan, text, 1, false, 0, ""});
    ADD_FAILURE() << "built a mail with a missing variable";
  } catch (const TemplateError& e) {
    EXPECT_STREQ(e.what(), "template: missing variable 'missing'");
  }
}

// A batch keeps the tags of both parts (SendGrid substitutes in text and html alike) and renders
// the step's subject per personalization.
TEST(SendgridAdapter, BatchCarriesHtmlTagsAndTheStepsSubject) {
  auto a = make_adapter(sendgrid_config());
  Batch b;
  b.plan.channel = "email";
  b.plan.template_text = "Hi {name}";
  b.plan.content.subject = "Order {order}";
  b.plan.content.html = "<p>Hi {name}, order {order}</p>";
  b.add(mail(1, "a@example.com", R"({"name":"A","order":1})"));
  b.add(mail(2, "b@example.com", R"({"name":"B","order":2})"));
  const json body = json::parse(a->build_batch(b.ctxs).body);
  EXPECT_EQ(body["content"], json::parse(R"([{"type":"text/plain","value":"Hi {name}"},
                                             {"type":"text/html","value":"<p>Hi {name}, order {order}</p>"}])"));
  EXPECT_EQ(body["personalizations"][0]["substitutions"], json::parse(R"({"{name}":"A","{order}":"1"})"));
  EXPECT_EQ(body["personalizations"][1]["substitutions"], json::parse(R"({"{name}":"B","{order}":"2"})"));
  EXPECT_EQ(body["personalizations"][0]["subject"], "Order 1");
  EXPECT_EQ(body["personalizations"][1]["subject"], "Order 2");
  // A member whose html misses a variable: the batch is refused, so each goes alone and that one
  // ends with the reason.
  Batch bad = b;
  bad.ctxs.clear();
  for (std::size_t i = 0; i < bad.notes.size(); ++i) {
    bad.ctxs.push_back(SendContext{bad.notes[i], bad.plan, bad.texts[i], 1, false, 0, ""});
  }
  bad.notes[1].data_json = R"({"name":"B"})";
  EXPECT_THROW((void)a->build_batch(bad.ctxs), TemplateError);
  // An escaped brace in the html: one by one, as for the text.
  Batch esc;
  esc.plan.template_text = "Hi {name}";
  esc.plan.content.html = "<style>p {{color:red}}</style>{name}";
  esc.add(mail(1, "a@example.com", R"({"name":"A"})"));
  esc.add(mail(2, "b@example.com", R"({"name":"B"})"));
  EXPECT_THROW((void)a->build_batch(esc.ctxs), Error);
}

TEST(SendgridAdapter, ClassifiesAnswers) {
  auto a = make_adapter(sendgrid_config());
  const Outcome ok = a->classify(answer(202, "", {{"x-message-id", "abc123XYZ"}}));
  EXPECT_EQ(ok.kind, OutcomeKind::accepted);
  EXPECT_EQ(ok.provider_message_id, "abc123XYZ");

  const Outcome bad = a->classify(answer(
      400, R"({"errors":[{"message":"The from email does not contain a valid address.","field":"from.email"},{"message":"second"}]})"));
  EXPECT_EQ(bad.kind, OutcomeKind::permanent);
  EXPECT_EQ(bad.error, "HTTP 400: sendgrid The from email does not contain a valid address.");
  for (long status : {401L, 403L}) {
    const Outcome denied = a->classify(answer(status, R"({"errors":[{"message":"The provided authorization grant is invalid"}]})"));
    EXPECT_EQ(denied.kind, OutcomeKind::permanent);
    EXPECT_EQ(denied.error, "HTTP " + std::to_string(status) + ": sendgrid: api key rejected");
    expect_no_secret(denied.error);
  }
  EXPECT_EQ(a->classify(answer(413, R"({"errors":[{"message":"too large"}]})")).kind, OutcomeKind::permanent);
  EXPECT_EQ(a->classify(answer(404, "nope")).kind, OutcomeKind::permanent);

  const Outcome limited = a->classify(answer(429, R"({"errors":[{"message":"too many requests"}]})", {{"retry-after", "4"}}));
  EXPECT_EQ(limited.kind, OutcomeKind::retryable);
  EXPECT_EQ(limited.retry_after_ms, 4000);
  const Outcome reset = a->classify(answer(429, "", {{"x-ratelimit-reset", "1"}}));  // long past
  EXPECT_EQ(reset.kind, OutcomeKind::retryable);
  EXPECT_EQ(reset.retry_after_ms, 0);
  EXPECT_EQ(a->classify(answer(500)).kind, OutcomeKind::retryable);
  EXPECT_EQ(a->classify(answer(503)).retry_after_ms, -1);
  http::Response refused;
  refused.transport_error = "Connection refused";
  EXPECT_EQ(a->classify(refused).kind, OutcomeKind::retryable);

  const auto batch = a->classify_batch(answer(202, "", {{"x-message-id", "m1"}}), 3);
  ASSERT_EQ(batch.size(), 3u);
  for (const Outcome& o : batch) {
    EXPECT_EQ(o.kind, OutcomeKind::accepted);
    EXPECT_EQ(o.provider_message_id, "m1");
  }
  const auto failed = a->classify_batch(answer(400, R"({"errors":[{"message":"dup"}]})"), 2);
  ASSERT_EQ(failed.size(), 2u);
  EXPECT_EQ(failed[1].kind, OutcomeKind::permanent);
}

// ---- batching ----------------------------------------------------------------------------------------

TEST(SendgridAdapter, BatchCarriesSubstitutionsPerPersonalization) {
  auto a = make_adapter(sendgrid_config());
  EXPECT_EQ(a->max_batch(), 1000u);
  Batch b;
  b.plan.channel = "email";
  b.plan.template_text = "Hello {name|there}, {count} new; {name|there} again {user.city}";
  b.add(mail(1, "a@example.com", R"({"name":"Ada","count":3,"user":{"city":"Paris"}})"));
  b.add(mail(2, "b@example.com", R"({"count":0,"user":{"city":"Oslo"}})"));
  const http::Request req = a->build_batch(b.ctxs);
  EXPECT_EQ(req.url, "https://api.sendgrid.com/v3/mail/send");
  EXPECT_TRUE(has_header(req, "Authorization: Bearer " + api_key));
  const json body = json::parse(req.body);
  EXPECT_EQ(body["content"][0]["value"], b.plan.template_text);
  EXPECT_EQ(body["subject"], "From herald");
  ASSERT_EQ(body["personalizations"].size(), 2u);
  const json& p0 = body["personalizations"][0];
  const json& p1 = body["personalizations"][1];
  EXPECT_EQ(p0["to"][0]["email"], "a@example.com");
  EXPECT_EQ(p0["custom_args"]["herald_id"], "1");
  EXPECT_EQ(p1["custom_args"]["herald_id"], "2");
  EXPECT_EQ(p0["substitutions"],
            json::parse(R"({"{name|there}":"Ada","{count}":"3","{user.city}":"Paris"})"));
  EXPECT_EQ(p1["substitutions"], json::parse(R"({"{name|there}":"there","{count}":"0","{user.city}":"Oslo"})"));
  EXPECT_FALSE(p0.contains("subject"));
  // Substituting each tag into the content gives exactly each notification's rendered text.
  for (std::size_t i = 0; i < 2; ++i) {
    std::string text = body["content"][0]["value"];
    for (const auto& [tag, value] : body["personalizations"][i]["substitutions"].items()) {
      for (auto at = text.find(tag); at != std::string::npos; at = text.find(tag, at + value.get<std::string>().size())) {
        text.replace(at, tag.size(), value.get<std::string>());
      }
    }
    EXPECT_EQ(text, b.texts[i]);
  }
}

TEST(SendgridAdapter, BatchSubjectsGoPerPersonalizationWhenTheyDiffer) {
  auto a = make_adapter(sendgrid_config());
  Batch b;
  b.plan.template_text = "Hi {name}";
  b.add(mail(1, "a@example.com", R"({"name":"A","subject":"For A"})"));
  b.add(mail(2, "b@example.com", R"({"name":"B"})"));
  const json body = json::parse(a->build_batch(b.ctxs).body);
  EXPECT_EQ(body["personalizations"][0]["subject"], "For A");
  EXPECT_EQ(body["personalizations"][1]["subject"], "From herald");
}

TEST(SendgridAdapter, ThousandRecipientBatchBuilds) {
  auto a = make_adapter(sendgrid_config());
  Batch b;
  b.plan.template_text = "Hello {name}, {count} new";
  for (int i = 0; i < 1000; ++i) {
    b.add(mail(1000 + i, "user" + std::to_string(i) + "@example.com",
               R"({"name":"N)" + std::to_string(i) + R"(","count":)" + std::to_string(i) + "}"));
  }
  const json body = json::parse(a->build_batch(b.ctxs).body);
  ASSERT_EQ(body["personalizations"].size(), 1000u);
  const json& p = body["personalizations"][777];
  EXPECT_EQ(p["to"][0]["email"], "user777@example.com");
  EXPECT_EQ(p["custom_args"]["herald_id"], "1777");
  EXPECT_EQ(p["substitutions"]["{name}"], "N777");
  EXPECT_EQ(p["substitutions"]["{count}"], "777");
  b.add(mail(5000, "one-too-many@example.com", R"({"name":"X","count":1})"));
  EXPECT_THROW((void)a->build_batch(b.ctxs), Error);
}

TEST(SendgridAdapter, BatchRefusesWhatItCannotCarry) {
  auto a = make_adapter(sendgrid_config());
  Batch dup;
  dup.plan.template_text = "Hello {name}";
  dup.add(mail(1, "a@example.com"));
  dup.add(mail(2, "b@example.com"));
  dup.add(mail(3, "A@Example.com"));
  EXPECT_THROW((void)a->build_batch(dup.ctxs), Error);

  Batch braces;
  braces.plan.template_text = "Use {{literal}} braces, {name}";
  braces.add(mail(1, "a@example.com"));
  braces.add(mail(2, "b@example.com"));
  EXPECT_THROW((void)a->build_batch(braces.ctxs), Error);

  Batch no_address;
  no_address.plan.template_text = "Hello {name}";
  no_address.add(mail(1, "a@example.com"));
  Notification n = mail(2, "x");
  n.recipient_json = R"({"id":"u"})";
  no_address.add(n);
  EXPECT_THROW((void)a->build_batch(no_address.ctxs), Error);

  Batch mixed;
  mixed.plan.template_text = "Hello {name}";
  mixed.add(mail(1, "a@example.com"));
  PlanStep other;
  other.template_text = "Bye {name}";
  const std::string text = "Bye Ada";
  const Notification n2 = mail(2, "b@example.com");
  mixed.ctxs.push_back(SendContext{n2, other, text, 1, false, 0, ""});
  try {
    (void)a->build_batch(mixed.ctxs);
    ADD_FAILURE() << "mixed templates were batched";
  } catch (const Error& e) {
    expect_no_secret(e.what());
  }
}

// ---- the Event Webhook -------------------------------------------------------------------------------------

TEST(SendgridAdapter, VerifiesTheEventWebhookSignature) {
  const crypto::PrivateKey key(crypto::generate_private_key_pem("ec"));
  auto a = make_adapter(sendgrid_config(key.public_key_base64()));
  EXPECT_TRUE(a->has_receipts());
  const std::string body = R"([{"email":"a@example.com","event":"delivered","herald_id":"42","sg_message_id":"abc.filter0001"}])";
  EXPECT_EQ(a->verify_receipt(event_post(key, body)).status, 0);
  EXPECT_EQ(a->verify_receipt(event_post(key, body, t0, t0 + 300)).status, 0);

  const ReceiptCheck no_sig = a->verify_receipt(without_header(event_post(key, body), "x-twilio-email-event-webhook-signature"));
  EXPECT_EQ(no_sig.status, 401);
  EXPECT_EQ(a->verify_receipt(without_header(event_post(key, body), "x-twilio-email-event-webhook-timestamp")).status, 401);

  const ReceiptCheck stale = a->verify_receipt(event_post(key, body, t0 - 301, t0));
  EXPECT_EQ(stale.status, 403);
  EXPECT_NE(stale.reason.find("stale"), std::string::npos);
  EXPECT_EQ(a->verify_receipt(event_post(key, body, t0 + 400, t0)).status, 403);

  const crypto::PrivateKey other(crypto::generate_private_key_pem("ec"));
  EXPECT_EQ(a->verify_receipt(event_post(other, body)).status, 403);
  InboundRequest tampered = event_post(key, body);
  tampered.body.replace(tampered.body.find("delivered"), 9, "bounce   ");
  EXPECT_EQ(a->verify_receipt(tampered).status, 403);
  InboundRequest garbled = event_post(key, body);
  for (auto& [k, v] : garbled.headers) {
    if (k == "x-twilio-email-event-webhook-timestamp") v = "17e8";
  }
  EXPECT_EQ(a->verify_receipt(garbled).status, 401);
}

TEST(SendgridAdapter, ParsesEveryEvent) {
  const crypto::PrivateKey key(crypto::generate_private_key_pem("ec"));
  auto a = make_adapter(sendgrid_config(key.public_key_base64()));
  const std::string body = R"([
    {"event":"processed","herald_id":"1","sg_message_id":"m1.filter1.1"},
    {"event":"deferred","herald_id":2,"sg_message_id":"m2.f","status":"4.2.2"},
    {"event":"delivered","herald_id":"3","sg_message_id":"m3"},
    {"event":"open","herald_id":"4"},
    {"event":"click","herald_id":"5"},
    {"event":"bounce","type":"bounce","herald_id":"6","status":"5.1.1"},
    {"event":"bounce","type":"blocked","herald_id":"7"},
    {"event":"dropped","herald_id":"8","reason":"Bounced Address"},
    {"event":"unsubscribe","herald_id":"9"},
    {"event":"group_unsubscribe","herald_id":"10"},
    {"event":"spamreport","herald_id":"11"},
    {"event":"delivered"}
  ])";
  const auto rs = a->parse_receipt(event_post(key, body));
  const ReceiptStatus want[] = {ReceiptStatus::progress,     ReceiptStatus::bounced_soft, ReceiptStatus::delivered,
                                ReceiptStatus::opened,       ReceiptStatus::opened,       ReceiptStatus::bounced_hard,
                                ReceiptStatus::bounced_soft, ReceiptStatus::failed,       ReceiptStatus::opted_out,
                                ReceiptStatus::opted_out,    ReceiptStatus::opted_out,    ReceiptStatus::delivered};
  ASSERT_EQ(rs.size(), std::size(want));
  for (std::size_t i = 0; i < rs.size(); ++i) {
    EXPECT_EQ(rs[i].status, want[i]) << i << " " << rs[i].provider_status;
    EXPECT_EQ(rs[i].notification_id, i < 11 ? static_cast<Id>(i + 1) : 0) << i;
  }
  EXPECT_EQ(rs[0].provider_message_id, "m1");
  EXPECT_EQ(rs[1].provider_message_id, "m2");
  EXPECT_EQ(rs[2].provider_message_id, "m3");
  EXPECT_EQ(rs[1].error_code, "4.2.2");
  EXPECT_EQ(rs[5].error_code, "5.1.1");
  EXPECT_EQ(rs[5].provider_status, "bounce");
  EXPECT_THROW((void)a->parse_receipt(event_post(key, "not json")), std::invalid_argument);
  EXPECT_THROW((void)a->parse_receipt(event_post(key, "\"x\"")), std::invalid_argument);
}
