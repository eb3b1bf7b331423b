#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "herald/errors.hpp"
#include "herald/provider.hpp"

#include "adapter_test_support.hpp"

using namespace herald;
using herald::adapter_test::answer;

TEST(Classify, SuccessTakesTheProvidersMessageId) {
  auto o = classify_http(answer(202, R"({"id":"sbx-9","status":"accepted"})"));
  EXPECT_EQ(o.kind, OutcomeKind::accepted);
  EXPECT_EQ(o.provider_message_id, "sbx-9");
  auto h = classify_http(answer(202, "", {{"x-message-id", "abc"}}));
  EXPECT_EQ(h.kind, OutcomeKind::accepted);
  EXPECT_EQ(h.provider_message_id, "abc");
}

// classify_http reads the id without building a json value; it must answer as the lookup in a
// parsed body does, for every shape of body.
TEST(Classify, TheMessageIdIsWhatAParsedBodyHoldsWhateverTheBody) {
  auto parsed = [](const std::string& body) {
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object()) {
      for (const char* key : {"id", "sid", "name", "message_id"}) {
        auto it = j.find(key);
        if (it != j.end() && it->is_string()) {
          std::string id = it->get<std::string>();
          return id.empty() ? std::string("(header)") : id;  // an empty id: the header's
        }
      }
    }
    return std::string("(header)");
  };
  const std::vector<std::string> bodies{
      R"({"id":"a"})", R"({"sid":"b","id":"a"})", R"({"status":"ok","message_id":"m","name":"n"})",
      R"({"id":5,"sid":"s"})", R"({"id":"a","id":7,"name":"n"})", R"({"id":7,"id":"late"})",
      R"({"id":{"id":"inner"},"sid":"s"})", R"({"data":{"id":"inner"}})", R"({"id":["x"],"message_id":"m"})",
      R"({"list":[{"id":"x"}],"name":"n"})", R"({"id":null,"sid":true,"name":1.5,"message_id":"m"})",
      R"([{"id":"a"}])", R"("id")", "", "   ", "{", R"({"id":"a"} trailing)", R"({"id":"a",})",
      R"({"id":"caf\u00e9 \ud83d\ude00"})", "{\"id\":\"\xff\"}", R"({"id":"\ud800"})", R"({"ID":"upper"})",
      R"(  {"id" : "spaced" }  )", R"({"id":"a"}{"id":"b"})", R"({"id":1e999})", R"({"sid":"s","id":""})",
      R"({"a":[[[[{"id":"deep"}]]]],"sid":"s"})", R"({"id":"x"} // comment)"};
  for (const auto& body : bodies) {
    const Outcome o = classify_http(answer(202, body, {{"x-message-id", "(header)"}}));
    EXPECT_EQ(o.provider_message_id, parsed(body)) << body;
    EXPECT_EQ(o.kind, OutcomeKind::accepted) << body;
  }
}

TEST(Classify, TransportFailuresAndServerErrorsAreRetryable) {
  http::Response timeout;
  timeout.timed_out = true;
  EXPECT_EQ(classify_http(timeout).kind, OutcomeKind::retryable);
  EXPECT_EQ(classify_http(timeout).error, "timeout");
  EXPECT_EQ(classify_http(answer(500)).kind, OutcomeKind::retryable);
  EXPECT_EQ(classify_http(answer(503)).kind, OutcomeKind::retryable);
  EXPECT_EQ(classify_http(answer(408)).kind, OutcomeKind::retryable);
}

TEST(Classify, TooManyRequestsHonoursRetryAfter) {
  auto o = classify_http(answer(429, "{}", {{"retry-after", "3"}}));
  EXPECT_EQ(o.kind, OutcomeKind::retryable);
  EXPECT_EQ(o.retry_after_ms, 3000);
  EXPECT_EQ(classify_http(answer(429)).retry_after_ms, -1);
}

TEST(Classify, ClientErrorsArePermanentAndBadRecipientsAreNamed) {
  EXPECT_EQ(classify_http(answer(400, "bad")).kind, OutcomeKind::permanent);
  EXPECT_EQ(classify_http(answer(401)).kind, OutcomeKind::permanent);
  auto o = classify_http(answer(400, R"({"error":{"code":"recipient_invalid"}})"));
  EXPECT_EQ(o.kind, OutcomeKind::recipient_invalid);
  EXPECT_NE(o.error.find("recipient_invalid"), std::string::npos);
}

TEST(RetryAfter, ParsesSecondsAndHttpDates) {
  EXPECT_EQ(parse_retry_after_ms("120", 0), 120'000);
  EXPECT_EQ(parse_retry_after_ms(" 5 ", 0), 5000);
  EXPECT_EQ(parse_retry_after_ms("", 0), -1);
  EXPECT_EQ(parse_retry_after_ms("soon", 0), -1);
  // Sun, 06 Nov 1994 08:49:37 GMT = 784111777 s
  EXPECT_EQ(parse_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", 784111770'000), 7000);
  EXPECT_EQ(parse_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", 784111790'000), 0);
}

TEST(Render, FillsVariablesDefaultsAndPaths) {
  const std::string data = R"({"code":"123456","user":{"name":"Ada"},"n":3})";
  EXPECT_EQ(render_template("Code {code}", data), "Code 123456");
  EXPECT_EQ(render_template("Hi {user.name}, {n} items", data), "Hi Ada, 3 items");
  EXPECT_EQ(render_template("Hi {nick|friend}", data), "Hi friend");
  EXPECT_EQ(render_template("Hi {nick|}!", data), "Hi !");  // an explicit empty default
  EXPECT_EQ(render_template("{{literal}}", data), "{literal}");
  EXPECT_EQ(render_template("no placeholders", data), "no placeholders");
}

// Never a blank: a variable with neither a value nor a default names itself and renders nothing.
TEST(Render, AMissingVariableIsATemplateError) {
  const std::string data = R"({"user":{"name":"Ada"},"gone":null})";
  auto error_of = [&](std::string_view tmpl, const std::string& d) -> std::string {
    try {
      return "rendered: " + render_template(tmpl, d);
    } catch (const TemplateError& e) {
      return e.what();
    }
  };
  EXPECT_EQ(error_of("Code {code}", data), "template: missing variable 'code'");
  EXPECT_EQ(error_of("Hi {user.nick}", data), "template: missing variable 'user.nick'");
  EXPECT_EQ(error_of("{gone}", data), "template: missing variable 'gone'");  // null is no value
  EXPECT_EQ(error_of("{user.name.first}", data), "template: missing variable 'user.name.first'");
  EXPECT_EQ(error_of("Code {code}", "not json"), "template: missing variable 'code'");
  EXPECT_EQ(error_of("{gone|none}", data), "rendered: none");
}

TEST(ProviderConfig, BadFieldsNameTheProviderAndField) {
  ProviderConfig c;
  c.name = "sms";
  c.kind = "carrier-pigeon";
  c.url = "http://127.0.0.1:1";
  try {
    validate(c);
    FAIL() << "accepted an unknown kind";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("providers.sms.kind"), std::string::npos);
  }
  c.kind = "sandbox";
  c.url = "ftp://x";
  EXPECT_THROW(validate(c), ConfigError);
  c.url = "http://127.0.0.1:1";
  c.concurrency = 0;
  EXPECT_THROW(validate(c), ConfigError);
  c.concurrency = 8;
  EXPECT_NO_THROW(validate(c));
}

TEST(SandboxAdapter, BuildsAJsonPostWithIdempotencyHeaders) {
  ProviderConfig c;
  c.name = "sms-primary";
  c.kind = "sandbox";
  c.url = "http://127.0.0.1:9/";
  c.concurrency = 4;
  c.timeout_ms = 1000;
  c.headers = {{"X-Team", "growth"}};
  auto adapter = make_adapter(c);
  Notification n;
  n.id = 42;
  n.type = "otp";
  n.recipient_id = "u1";
  n.recipient_json = R"({"id":"u1","phone":"+15550001"})";
  n.data_json = R"({"code":"9"})";
  PlanStep plan{"sms", {"sms-primary"}, "Code {code}", {}};
  const std::string text = "Code 9";
  auto req = adapter->build(SendContext{n, plan, text, 2, true, 0, {}});
  EXPECT_EQ(req.url, "http://127.0.0.1:9/v1/sms-primary/messages");
  EXPECT_EQ(req.method, "POST");
  auto body = nlohmann::json::parse(req.body);
  EXPECT_EQ(body["id"], 42);
  EXPECT_EQ(body["text"], "Code 9");
  EXPECT_EQ(body["to"]["phone"], "+15550001");
  auto has = [&](const std::string& h) { return std::find(req.headers.begin(), req.headers.end(), h) != req.headers.end(); };
  EXPECT_TRUE(has("Idempotency-Key: herald-42"));
  EXPECT_TRUE(has("X-Herald-Attempt: 2"));
  EXPECT_TRUE(has("X-Herald-In-Doubt: 1"));
  EXPECT_TRUE(has("X-Team: growth"));
}
