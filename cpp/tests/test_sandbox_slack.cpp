// The sandbox's Slack incoming webhooks over real HTTP on loopback.
#include "test_sandbox_support.hpp"

namespace {

using namespace sandbox_test;
using herald::sandbox::Server;

}  // namespace

TEST(SandboxSlack, OkNoTextAndRateLimit) {
  Server server(options());
  const std::string hook = server.url() + "/services/T000/B000/secretXYZ";
  Response r = send("POST", hook, R"({"text":"hello"})", {"Content-Type: application/json"});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  r = send("POST", hook, R"({"username":"x"})", {"Content-Type: application/json"});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.body, "no_text");
  EXPECT_EQ(send("POST", hook, R"({"blocks":[{"type":"divider"}]})").status, 200);
  EXPECT_EQ(send("POST", server.url() + "/services/T000/B000", R"({"text":"x"})").status, 404);

  // Burst 5 per hook (two used above): three more pass, the next is limited.
  int ok = 0;
  Response limited;
  for (int i = 0; i < 6; ++i) {
    r = send("POST", hook, R"({"text":"burst"})");
    if (r.status == 200) {
      ++ok;
    } else {
      limited = r;
    }
  }
  EXPECT_EQ(ok, 3);
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.body, "rate_limited");
  EXPECT_EQ(limited.header("retry-after"), "1");
  // Another hook has its own bucket.
  EXPECT_EQ(send("POST", server.url() + "/services/T1/B1/s", R"({"text":"x"})").status, 200);

  const json recs = server.messages("slack");
  ASSERT_EQ(recs.size(), 6u);
  EXPECT_EQ(recs[0]["text"], "hello");
  EXPECT_EQ(recs[0]["to"], "T000/B000");
  EXPECT_EQ(recs.dump().find("secretXYZ"), std::string::npos);  // the hook's secret part is not recorded
}

TEST(SandboxSlack, RateIsSettableAndFaultsAnswerText) {
  Server server(options());
  ASSERT_EQ(send("PUT", server.url() + "/_sandbox/settings/slack", R"({"rate_per_s":1,"burst":1})").status, 200);
  const std::string hook = server.url() + "/services/T/B/X";
  EXPECT_EQ(send("POST", hook, R"({"text":"a"})").status, 200);
  EXPECT_EQ(send("POST", hook, R"({"text":"b"})").status, 429);
  EXPECT_EQ(send("PUT", server.url() + "/_sandbox/settings/slack", R"({"burst":-1})").status, 400);

  herald::sandbox::Faults f;
  f.error_rate = 1.0;
  f.error_status = 403;
  f.error_code = "invalid_token";
  server.set_faults("slack", f);
  const Response r = send("POST", hook, R"({"text":"c"})");
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.body, "invalid_token");
}
