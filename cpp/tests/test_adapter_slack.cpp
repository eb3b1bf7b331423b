// Slack incoming-webhook adapter: configuration, request shape and classification, on crafted
// responses (no sockets). The webhook URL is the credential: it must never reach an error text.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "herald/errors.hpp"
#include "herald/provider.hpp"

#include "adapter_test_support.hpp"

using namespace herald;
using herald::adapter_test::answer;
using herald::adapter_test::config_error_of;
using json = nlohmann::json;

namespace {

const std::string hook = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX";

ProviderConfig slack_config() {
  ProviderConfig c;
  c.name = "ops";
  c.kind = "slack";
  c.secrets["webhook_url"] = hook;
  return c;
}

struct Send {
  Notification n;
  PlanStep plan;
  std::string text = "Deploy \"42\" finished\n";
  SendContext ctx() const { return SendContext{n, plan, text, 1, false, 0, ""}; }
};

TEST(SlackAdapter, TheUrlComesFromTheSecretElseFromUrl) {
  Send s;
  EXPECT_EQ(make_adapter(slack_config())->build(s.ctx()).url, hook);

  ProviderConfig both = slack_config();
  both.url = "http://127.0.0.1:8025/slack/hook";
  EXPECT_EQ(make_adapter(both)->build(s.ctx()).url, hook) << "the secret wins";

  ProviderConfig url_only = both;
  url_only.secrets.clear();
  EXPECT_EQ(make_adapter(url_only)->build(s.ctx()).url, "http://127.0.0.1:8025/slack/hook");

  ProviderConfig neither = slack_config();
  neither.secrets.clear();
  EXPECT_EQ(config_error_of(neither), "providers.ops.secrets.webhook_url: is required (or url)");

  ProviderConfig bad = slack_config();
  bad.secrets["webhook_url"] = "hooks.slack.com/services/T000/B000/XXXXsecretXXXX";
  const std::string e = config_error_of(bad);
  EXPECT_EQ(e, "providers.ops.secrets.webhook_url: must start with http:// or https://");
  EXPECT_EQ(e.find("XXXX"), std::string::npos) << "only the field name, never the value";
  EXPECT_EQ(e.find("hooks.slack.com"), std::string::npos);
}

TEST(SlackAdapter, PostsTextAndBlocks) {
  auto a = make_adapter(slack_config());
  Send s;
  s.n.id = 5;
  const http::Request req = a->build(s.ctx());
  EXPECT_EQ(req.method, "POST");
  ASSERT_FALSE(req.headers.empty());
  EXPECT_EQ(req.headers.front(), "Content-Type: application/json");
  EXPECT_EQ(json::parse(req.body), json::parse(R"({"text":"Deploy \"42\" finished\n"})"));

  s.n.data_json = R"({"blocks":[{"type":"section","text":{"type":"mrkdwn","text":"*done*"}}]})";
  EXPECT_EQ(json::parse(a->build(s.ctx()).body),
            json::parse(R"({"text":"Deploy \"42\" finished\n",
                            "blocks":[{"type":"section","text":{"type":"mrkdwn","text":"*done*"}}]})"));
  s.n.data_json = R"({"blocks":"not an array"})";
  EXPECT_FALSE(json::parse(a->build(s.ctx()).body).contains("blocks"));
  s.n.data_json = "not json";
  EXPECT_FALSE(json::parse(a->build(s.ctx()).body).contains("blocks"));

  s.n.recipient_json = R"({"email":"a@example.com"})";
  EXPECT_EQ(a->address(s.n), "");
}

TEST(SlackAdapter, ClassifiesEverySlackAnswer) {
  auto a = make_adapter(slack_config());
  auto ok = a->classify(answer(200, "ok"));
  EXPECT_EQ(ok.kind, OutcomeKind::accepted);
  EXPECT_EQ(ok.provider_message_id, "");

  auto limited = a->classify(answer(429, "rate_limited", {{"retry-after", "2"}}));
  EXPECT_EQ(limited.kind, OutcomeKind::retryable);
  EXPECT_EQ(limited.retry_after_ms, 2000);

  for (auto [status, text] : {std::pair{400L, "invalid_payload"}, std::pair{400L, "no_text"},
                              std::pair{403L, "invalid_token"}, std::pair{404L, "no_service"},
                              std::pair{410L, "channel_is_archived"}}) {
    auto o = a->classify(answer(status, text));
    EXPECT_EQ(o.kind, OutcomeKind::permanent) << text;
    EXPECT_EQ(o.error, "HTTP " + std::to_string(status) + ": " + text);
    EXPECT_EQ(o.provider_code, text);  // Slack's own word, for the delivery log
  }
  EXPECT_EQ(a->classify(answer(400, "<html>Bad Request</html>")).provider_code, "");  // not a code
  EXPECT_EQ(a->classify(answer(500, "")).kind, OutcomeKind::retryable);
  EXPECT_EQ(a->classify(answer(503, "upstream")).kind, OutcomeKind::retryable);
  EXPECT_EQ(a->classify(answer(503, "upstream")).retry_after_ms, -1);
}

TEST(SlackAdapter, TheWebhookUrlNeverReachesAnError) {
  auto a = make_adapter(slack_config());
  http::Response down;
  down.transport_error = "Failed to connect to " + hook + " port 443";
  auto o = a->classify(down);
  EXPECT_EQ(o.kind, OutcomeKind::retryable);
  EXPECT_EQ(o.error.find("XXXXsecretXXXX"), std::string::npos) << o.error;

  http::Response path_only;
  path_only.transport_error = "bad request line POST /services/T000/B000/XXXXsecretXXXX";
  EXPECT_EQ(a->classify(path_only).error.find("XXXXsecretXXXX"), std::string::npos);

  // A long body with the URL near the 200-byte cut: scrubbed before it is shortened.
  auto echoed = a->classify(answer(400, std::string(170, 'x') + " " + hook));
  EXPECT_EQ(echoed.kind, OutcomeKind::permanent);
  EXPECT_EQ(echoed.error.find("XXXXsecret"), std::string::npos) << echoed.error;
  EXPECT_EQ(echoed.error.find("T000/B000"), std::string::npos) << echoed.error;
}

}  // namespace
