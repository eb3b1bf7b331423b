// The engine end to end in C++: a fixed router, the real sandbox over loopback, a real SQLite file.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "herald/clock.hpp"
#include "herald/engine.hpp"
#include "herald/errors.hpp"
#include "herald/sandbox.hpp"
#include "temp_dir.hpp"

using namespace herald;
namespace fs = std::filesystem;

namespace {

class FixedRouter : public Router {
 public:
  std::map<std::string, PlanStep> plans;
  std::vector<RouteResult> route(const std::vector<const Notification*>& batch) override {
    std::vector<RouteResult> out;
    for (const Notification* n : batch) {
      auto it = plans.find(n->type);
      if (it == plans.end()) {
        out.push_back({false, {}, "no rule for " + n->type});
      } else {
        out.push_back(RouteResult::of(Plan::one(it->second)));
      }
    }
    return out;
  }
};

struct EngineTest : ::testing::Test {
  herald::testing::TempDir tmp{"herald-engine-test-"};
  fs::path dir = tmp.path;
  sandbox::Server sandbox{sandbox::Server::Options{}};
  std::shared_ptr<FixedRouter> router = std::make_shared<FixedRouter>();

  EngineOptions options() {
    EngineOptions o;
    o.data_dir = dir;
    o.retry.base_ms = 10;
    o.retry.max_ms = 50;
    o.close_timeout = std::chrono::milliseconds(2000);
    {
      ProviderConfig c;
      c.name = "primary";
      c.kind = "sandbox";
      c.url = sandbox.url();
      c.concurrency = 8;
      c.max_attempts = 2;
      c.timeout_ms = 2000;
      o.providers.push_back(c);
    }
    {
      ProviderConfig c;
      c.name = "backup";
      c.kind = "sandbox";
      c.url = sandbox.url();
      c.concurrency = 8;
      c.max_attempts = 2;
      c.timeout_ms = 2000;
      o.providers.push_back(c);
    }
    router->plans["otp"] = PlanStep{"sms", {"primary", "backup"}, "code {code}", {}};
    return o;
  }

  static Notification otp(const std::string& user, std::string key = {}) {
    Notification n;
    n.type = "otp";
    n.recipient_id = user;
    n.recipient_json = "{\"id\":\"" + user + "\"}";
    n.data_json = R"({"code":"123"})";
    n.idempotency_key = std::move(key);
    return n;
  }
};

}  // namespace

TEST_F(EngineTest, SendsThroughTheSandboxAndRecordsTheTrace) {
  Engine engine(options(), router);
  auto r = engine.send(otp("u1"));
  ASSERT_TRUE(engine.wait_idle(std::chrono::seconds(10)));
  auto s = engine.status(r.id);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->delivery.state, State::completed);
  EXPECT_EQ(s->delivery.provider, "primary");
  auto msgs = sandbox.messages("primary");
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0]["body"]["text"], "code 123");
  std::vector<std::string> kinds;
  for (const auto& e : engine.trace(r.id)) kinds.emplace_back(to_string(e.kind));
  EXPECT_EQ(kinds, (std::vector<std::string>{"received", "queued", "routed", "sending", "accepted", "completed"}));
}

TEST_F(EngineTest, FailsOverWhenThePrimaryKeepsFailing) {
  sandbox::Faults f;
  f.error_rate = 1.0;
  f.error_status = 503;
  sandbox.set_faults("primary", f);
  Engine engine(options(), router);
  auto r = engine.send(otp("u2"));
  ASSERT_TRUE(engine.wait_idle(std::chrono::seconds(10)));
  auto s = engine.status(r.id);
  EXPECT_EQ(s->delivery.state, State::completed);
  EXPECT_EQ(s->delivery.provider, "backup");
  EXPECT_EQ(s->delivery.attempt, 3);  // two on primary, one on backup
  EXPECT_EQ(sandbox.messages("backup").size(), 1u);
  EXPECT_EQ(engine.stats().failovers, 1u);
}

TEST_F(EngineTest, IdempotencyKeyRepeatsAreNotSentTwice) {
  Engine engine(options(), router);
  auto a = engine.send(otp("u3", "reset-1"));
  auto b = engine.send(otp("u3", "reset-1"));
  EXPECT_EQ(a.id, b.id);
  EXPECT_TRUE(b.duplicate);
  auto other = otp("u3", "reset-1");
  other.data_json = R"({"code":"999"})";
  EXPECT_THROW(engine.send(other), IdempotencyConflict);
  ASSERT_TRUE(engine.wait_idle(std::chrono::seconds(10)));
  EXPECT_EQ(sandbox.messages("primary").size(), 1u);
}

TEST_F(EngineTest, AnAttemptLeftSendingIsResentOnceAndFlaggedInDoubt) {
  Id id = 0;
  {
    // Write the state a crash between "sending" and the answer leaves behind.
    Store store(dir, Durability::process);
    Notification n = otp("u4");
    n.id = 77;
    n.created_at_ms = now_ms();
    store.commit(WriteBatch{{n}, {}, {}, {}, {}, {}});
    DeliveryState d;
    d.state = State::sending;
    d.attempt = 1;
    d.provider_attempt = 1;
    d.provider = "primary";
    store.commit(WriteBatch{{}, {{77, d}}, {}, {}, {}, {}});
    id = 77;
  }
  Engine engine(options(), router);
  ASSERT_TRUE(engine.wait_idle(std::chrono::seconds(10)));
  auto s = engine.status(id);
  EXPECT_EQ(s->delivery.state, State::completed);
  EXPECT_TRUE(s->delivery.in_doubt);
  EXPECT_EQ(s->delivery.attempt, 2);
  auto msgs = sandbox.messages("primary");
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0]["headers"]["x-herald-in-doubt"], "1");
  EXPECT_EQ(engine.stats().in_doubt, 1u);
}

TEST_F(EngineTest, UnknownTypeIsDeadLetteredWithTheReason) {
  Engine engine(options(), router);
  Notification n = otp("u5");
  n.type = "mystery";
  auto r = engine.send(n);
  ASSERT_TRUE(engine.wait_idle(std::chrono::seconds(10)));
  auto dead = engine.dead_letters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].notification.id, r.id);
  EXPECT_EQ(dead[0].delivery.last_error, "no rule for mystery");
}
