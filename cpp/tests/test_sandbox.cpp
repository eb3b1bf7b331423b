// The sandbox server, exercised over real HTTP on loopback.
#include "herald/sandbox.hpp"
#include "eventually.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using herald::sandbox::Faults;
using herald::sandbox::Server;
using Headers = std::vector<std::pair<std::string, std::string>>;
using Response = http::response<http::string_body>;

/// A blocking HTTP/1.1 client on one keep-alive connection.
class Client {
 public:
  explicit Client(std::uint16_t port) : socket_(ioc_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }

  Response request(http::verb verb, const std::string& target, const std::string& body = {},
                   const Headers& headers = {}) {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    for (const auto& [name, value] : headers) req.set(name, value);
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    http::write(socket_, req);
    return read();
  }

  Response read() {
    Response res;
    http::read(socket_, buffer_, res);
    return res;
  }

  Response post(const std::string& target, const std::string& body, const Headers& headers = {}) {
    return request(http::verb::post, target, body, headers);
  }
  Response get(const std::string& target) { return request(http::verb::get, target); }

  tcp::socket& socket() { return socket_; }

 private:
  asio::io_context ioc_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

json body_json(const Response& res) { return json::parse(res.body()); }

Server::Options loopback(unsigned threads = 1, std::uint64_t seed = 42) {
  Server::Options o;
  o.threads = threads;
  o.seed = seed;
  return o;
}

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

TEST(SandboxServer, BindsAnEphemeralPortAndReportsItsUrl) {
  Server server(loopback());
  ASSERT_NE(server.port(), 0);
  EXPECT_EQ(server.url(), "http://127.0.0.1:" + std::to_string(server.port()));
}

TEST(SandboxServer, BindFailureThrows) {
  Server first(loopback());
  Server::Options taken = loopback();
  taken.port = first.port();
  EXPECT_THROW(Server{taken}, std::runtime_error);
  Server::Options foreign = loopback();
  foreign.host = "203.0.113.1";  // TEST-NET-3: not an address of this host
  EXPECT_THROW(Server{foreign}, std::runtime_error);
}

TEST(SandboxServer, AcceptsAndRecordsASend) {
  Server server(loopback());
  Client c(server.port());
  const Response res = c.post("/v1/sms/messages", R"({"to":"+15550100","text":"hi"})",
                              {{"X-Herald-Id", "77"},
                               {"Idempotency-Key", "herald-77"},
                               {"Authorization", "secret"},
                               {"X-Herald-Attempt", "1"}});
  ASSERT_EQ(res.result_int(), 202);
  const json answer = body_json(res);
  EXPECT_EQ(answer["id"], "sbx-1");
  EXPECT_EQ(answer["status"], "accepted");

  const json msgs = server.messages();
  ASSERT_EQ(msgs.size(), 1u);
  const json& m = msgs[0];
  EXPECT_EQ(m["seq"], 1);
  EXPECT_EQ(m["id"], "sbx-1");
  EXPECT_EQ(m["provider"], "sms");
  EXPECT_EQ(m["path"], "/v1/sms/messages");
  EXPECT_GT(m["received_at_ms"].get<std::int64_t>(), 1'600'000'000'000);
  EXPECT_EQ(m["headers"], (json{{"x-herald-id", "77"}, {"idempotency-key", "herald-77"}, {"x-herald-attempt", "1"}}));
  EXPECT_EQ(m["body"], (json{{"to", "+15550100"}, {"text", "hi"}}));

  const json stats = server.stats();
  EXPECT_EQ(stats["accepted"], 1);
  EXPECT_EQ(stats["rejected"], 0);
  EXPECT_EQ(stats["by_provider"]["sms"]["accepted"], 1);
}

TEST(SandboxServer, NonJsonBodyIsRecordedAsRawString) {
  Server server(loopback());
  Client c(server.port());
  ASSERT_EQ(c.post("/v1/sms/messages", "not json {").result_int(), 202);
  EXPECT_EQ(server.messages()[0]["body"], "not json {");
}

TEST(SandboxServer, WebhookIsRecordedAsHookProvider) {
  Server server(loopback());
  Client c(server.port());
  const Response res = c.post("/hooks/orders", R"({"a":1})");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(res.body(), "ok");
  const json msgs = server.messages("hook:orders");
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0]["body"]["a"], 1);
}

TEST(SandboxServer, MessagesFilterByProviderOverHttp) {
  Server server(loopback());
  Client c(server.port());
  for (const char* p : {"sms", "email", "sms", "push"}) {
    ASSERT_EQ(c.post(std::string("/v1/") + p + "/messages", "{}").result_int(), 202);
  }
  const json sms = body_json(c.get("/_sandbox/messages?provider=sms"));
  ASSERT_EQ(sms.size(), 2u);
  EXPECT_EQ(sms[0]["id"], "sbx-1");
  EXPECT_EQ(sms[1]["id"], "sbx-3");
  const json all = body_json(c.get("/_sandbox/messages"));
  ASSERT_EQ(all.size(), 4u);
  for (std::size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i]["seq"], i + 1);  // oldest first
  EXPECT_EQ(body_json(c.get("/_sandbox/messages?provider=none")).size(), 0u);
  EXPECT_EQ(server.messages("email").size(), 1u);
}

TEST(SandboxServer, ErrorFaultAnswersErrorStatusAndDoesNotRecord) {
  Server server(loopback());
  Faults f;
  f.error_rate = 1.0;
  f.error_status = 502;
  f.error_code = "provider_down";
  server.set_faults("sms", f);
  Client c(server.port());
  const Response res = c.post("/v1/sms/messages", "{}");
  EXPECT_EQ(res.result_int(), 502);
  EXPECT_EQ(body_json(res)["error"]["code"], "provider_down");
  EXPECT_TRUE(server.messages().empty());
  const json stats = server.stats();
  EXPECT_EQ(stats["rejected"], 1);
  EXPECT_EQ(stats["accepted"], 0);
  EXPECT_EQ(stats["by_provider"]["sms"]["rejected"], 1);

  // Without an error_code the body says "injected"; other providers are untouched.
  f.error_code.clear();
  server.set_faults("sms", f);
  EXPECT_EQ(body_json(c.post("/v1/sms/messages", "{}"))["error"]["code"], "injected");
  EXPECT_EQ(c.post("/v1/email/messages", "{}").result_int(), 202);
}

TEST(SandboxServer, RateLimitFaultAnswers429WithRetryAfter) {
  Server server(loopback());
  Faults f;
  f.rate_limit_rate = 1.0;
  f.retry_after_s = 7;
  server.set_faults("sms", f);
  Client c(server.port());
  const Response res = c.post("/v1/sms/messages", "{}");
  EXPECT_EQ(res.result_int(), 429);
  ASSERT_NE(res.find(http::field::retry_after), res.end());
  EXPECT_EQ(res[http::field::retry_after], "7");
  EXPECT_TRUE(server.messages().empty());
  EXPECT_EQ(server.stats()["rejected"], 1);
}

TEST(SandboxServer, OutageAnswers503UntilItEnds) {
  Server server(loopback());
  Client c(server.port());
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  Faults f;
  f.outage_until_ms = now_ms + 60'000;
  f.rate_limit_rate = 1.0;  // outage is drawn first
  server.set_faults("sms", f);
  Response res = c.post("/v1/sms/messages", "{}");
  EXPECT_EQ(res.result_int(), 503);
  EXPECT_EQ(body_json(res)["error"]["code"], "outage");

  f.outage_until_ms = now_ms - 1;
  f.rate_limit_rate = 0.0;
  server.set_faults("sms", f);
  EXPECT_EQ(c.post("/v1/sms/messages", "{}").result_int(), 202);
}

TEST(SandboxServer, LatencyDelaysTheAnswerWithoutBlockingTheThread) {
  Server server(loopback());  // one io thread
  Faults slow;
  slow.latency = std::chrono::milliseconds(300);
  server.set_faults("slow", slow);

  using Clock = std::chrono::steady_clock;
  std::atomic<double> slow_ms{0};
  std::atomic<int> slow_status{0};
  std::atomic<Clock::rep> slow_at{0};
  std::thread slow_client([&] {
    Client c(server.port());
    const auto t0 = Clock::now();
    slow_status = c.post("/v1/slow/messages", "{}").result_int();
    slow_at = Clock::now().time_since_epoch().count();
    slow_ms = elapsed_ms(t0);
  });
  // The slow send is recorded on receipt, before its latency: then it waits on its timer.
  // (EXPECT, not ASSERT: returning with slow_client joinable would end the process.)
  EXPECT_TRUE(herald::testing::eventually([&] { return server.messages("slow").size() == 1; }));
  Client fast(server.port());
  EXPECT_EQ(fast.post("/v1/fast/messages", "{}").result_int(), 202);
  const Clock::rep fast_at = Clock::now().time_since_epoch().count();
  slow_client.join();
  // Answered while the slow one waits on its timer: an order, not a wall-clock bound.
  EXPECT_LT(fast_at, slow_at.load()) << "the fast answer waited for the slow one";
  EXPECT_EQ(slow_status.load(), 202);
  EXPECT_GE(slow_ms.load(), 300.0);

  // Latency is added to rejections too.
  slow.error_rate = 1.0;
  slow.latency = std::chrono::milliseconds(120);
  server.set_faults("slow", slow);
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_EQ(fast.post("/v1/slow/messages", "{}").result_int(), 500);
  EXPECT_GE(elapsed_ms(t1), 120.0);
}

TEST(SandboxServer, FaultsSetOverHttpTakeEffect) {
  Server server(loopback());
  Client c(server.port());
  Response res = c.request(http::verb::put, "/_sandbox/faults/sms",
                           R"({"error_rate":1,"error_status":503,"error_code":"busy"})");
  ASSERT_EQ(res.result_int(), 200) << res.body();
  res = c.post("/v1/sms/messages", "{}");
  EXPECT_EQ(res.result_int(), 503);
  EXPECT_EQ(body_json(res)["error"]["code"], "busy");

  const json faults = body_json(c.get("/_sandbox/faults"));
  EXPECT_EQ(faults["sms"]["error_status"], 503);

  // outage_for_ms is relative to now.
  res = c.request(http::verb::put, "/_sandbox/faults/email", R"({"outage_for_ms":60000})");
  ASSERT_EQ(res.result_int(), 200) << res.body();
  EXPECT_EQ(c.post("/v1/email/messages", "{}").result_int(), 503);

  ASSERT_EQ(c.request(http::verb::delete_, "/_sandbox/faults").result_int(), 200);
  EXPECT_EQ(c.post("/v1/sms/messages", "{}").result_int(), 202);
  EXPECT_EQ(c.post("/v1/email/messages", "{}").result_int(), 202);
}

TEST(SandboxServer, BadFaultJsonIs400NamingTheField) {
  Server server(loopback());
  Client c(server.port());
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"error_rate":1.5})", "faults.error_rate"},
      {R"({"rate_limit_rate":-0.1})", "faults.rate_limit_rate"},
      {R"({"error_status":700})", "faults.error_status"},
      {R"({"latency_ms":-5})", "faults.latency_ms"},
      {R"({"bogus":1})", "faults.bogus"},
      {R"({"error_code":5})", "faults.error_code"},
      {R"([1,2])", "faults"},
  };
  for (const auto& [body, field] : cases) {
    const Response res = c.request(http::verb::put, "/_sandbox/faults/sms", body);
    EXPECT_EQ(res.result_int(), 400) << body;
    const json err = body_json(res)["error"];
    EXPECT_NE(err["message"].get<std::string>().find(field), std::string::npos) << err.dump();
  }
  const Response broken = c.request(http::verb::put, "/_sandbox/faults/sms", "{not json");
  EXPECT_EQ(broken.result_int(), 400);
  // Nothing was set by the rejected attempts.
  EXPECT_EQ(c.post("/v1/sms/messages", "{}").result_int(), 202);
}

TEST(SandboxFaults, FromJsonValidatesAndRoundTrips) {
  const Faults f = Faults::from_json({{"error_rate", 0.25},
                                      {"error_status", 503},
                                      {"error_code", "x"},
                                      {"rate_limit_rate", 0.5},
                                      {"retry_after_s", 3},
                                      {"latency_ms", 40},
                                      {"outage_until_ms", 1234}});
  EXPECT_DOUBLE_EQ(f.error_rate, 0.25);
  EXPECT_EQ(f.error_status, 503);
  EXPECT_EQ(f.error_code, "x");
  EXPECT_DOUBLE_EQ(f.rate_limit_rate, 0.5);
  EXPECT_EQ(f.retry_after_s, 3);
  EXPECT_EQ(f.latency, std::chrono::milliseconds(40));
  EXPECT_EQ(f.outage_until_ms, 1234);
  EXPECT_EQ(Faults::from_json(f.to_json()).to_json(), f.to_json());

  try {
    (void)Faults::from_json({{"error_rate", 2}});
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "faults.error_rate: must be between 0 and 1");
  }
  EXPECT_THROW((void)Faults::from_json({{"error_status", 99}}), std::invalid_argument);
  EXPECT_THROW((void)Faults::from_json({{"error_status", "500"}}), std::invalid_argument);
  EXPECT_THROW((void)Faults::from_json({{"retry_after_s", -1}}), std::invalid_argument);
  EXPECT_THROW((void)Faults::from_json({{"outage_until_ms", 1}, {"outage_for_ms", 1}}), std::invalid_argument);
  EXPECT_THROW((void)Faults::from_json(json::array()), std::invalid_argument);

  const auto before = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const Faults rel = Faults::from_json({{"outage_for_ms", 5000}});
  EXPECT_GE(rel.outage_until_ms, before + 5000);
  EXPECT_LT(rel.outage_until_ms, before + 6000);
  EXPECT_EQ(Faults::from_json(json::object()).to_json(), Faults{}.to_json());
}

TEST(SandboxServer, DeleteMessagesClearsRecordsAndCounters) {
  Server server(loopback());
  Client c(server.port());
  ASSERT_EQ(c.post("/v1/sms/messages", "{}").result_int(), 202);
  ASSERT_EQ(c.post("/v1/sms/messages", "{}").result_int(), 202);
  ASSERT_EQ(c.request(http::verb::delete_, "/_sandbox/messages").result_int(), 200);
  EXPECT_TRUE(server.messages().empty());
  EXPECT_EQ(body_json(c.get("/_sandbox/messages")).size(), 0u);
  const json stats = body_json(c.get("/_sandbox/stats"));
  EXPECT_EQ(stats["accepted"], 0);
  EXPECT_EQ(stats["by_provider"], json::object());
  // Ids keep counting, so an id is never handed out twice by one server.
  EXPECT_EQ(body_json(c.post("/v1/sms/messages", "{}"))["id"], "sbx-3");
  server.clear();
  EXPECT_TRUE(server.messages().empty());
}

TEST(SandboxServer, KeepAliveServesManyRequestsOnOneConnection) {
  Server server(loopback());
  Client c(server.port());
  constexpr int n = 500;
  for (int i = 0; i < n; ++i) {
    const Response res = c.post("/v1/x/messages", R"({"i":)" + std::to_string(i) + "}");
    ASSERT_EQ(res.result_int(), 202);
    ASSERT_TRUE(res.keep_alive());
  }
  const json msgs = server.messages("x");
  ASSERT_EQ(msgs.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(msgs[n - 1]["body"]["i"], n - 1);
}

TEST(SandboxServer, PipelinedRequestsAreAnsweredInOrder) {
  Server server(loopback());
  Client c(server.port());
  std::string wire;
  for (int i = 0; i < 3; ++i) {
    const std::string body = R"({"n":)" + std::to_string(i) + "}";
    wire += "POST /v1/p/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body;
  }
  asio::write(c.socket(), asio::buffer(wire));
  for (int i = 0; i < 3; ++i) {
    const Response res = c.read();
    ASSERT_EQ(res.result_int(), 202);
    EXPECT_EQ(body_json(res)["id"], "sbx-" + std::to_string(i + 1));
  }
}

TEST(SandboxServer, ConnectionCloseIsHonoured) {
  Server server(loopback());
  Client c(server.port());
  const Response res = c.post("/v1/sms/messages", "{}", {{"Connection", "close"}});
  EXPECT_EQ(res.result_int(), 202);
  EXPECT_FALSE(res.keep_alive());
  beast::flat_buffer buf;
  Response next;
  beast::error_code ec;
  http::read(c.socket(), buf, next, ec);
  EXPECT_EQ(ec, http::error::end_of_stream);
}

TEST(SandboxServer, WildcardFaultsApplyToProvidersWithoutTheirOwn) {
  Server server(loopback());
  Faults all;
  all.error_rate = 1.0;
  all.error_status = 500;
  server.set_faults("*", all);
  server.set_faults("email", Faults{});  // its own (empty) faults win over "*"
  Client c(server.port());
  EXPECT_EQ(c.post("/v1/sms/messages", "{}").result_int(), 500);
  EXPECT_EQ(c.post("/v1/push/messages", "{}").result_int(), 500);
  EXPECT_EQ(c.post("/v1/email/messages", "{}").result_int(), 202);

  // "*" set over HTTP, percent-encoded or not.
  server.clear_faults();
  ASSERT_EQ(c.request(http::verb::put, "/_sandbox/faults/%2A", R"({"rate_limit_rate":1})").result_int(), 200);
  EXPECT_EQ(c.post("/v1/sms/messages", "{}").result_int(), 429);
}

TEST(SandboxServer, UnknownPathsAre404AndWrongMethodsAre405) {
  Server server(loopback());
  Client c(server.port());
  Response res = c.get("/nope");
  EXPECT_EQ(res.result_int(), 404);
  EXPECT_EQ(body_json(res)["error"]["code"], "not_found");
  EXPECT_EQ(c.get("/v1/sms/other").result_int(), 404);
  EXPECT_EQ(c.get("/_sandbox/unknown").result_int(), 404);
  res = c.request(http::verb::delete_, "/v1/sms/messages");  // GET lists (see SandboxHerald tests)
  EXPECT_EQ(res.result_int(), 405);
  EXPECT_EQ(res[http::field::allow], "GET, POST");
  EXPECT_EQ(c.request(http::verb::put, "/v1/sms/messages", "{}").result_int(), 405);
  EXPECT_EQ(c.get("/hooks/x").result_int(), 405);
  EXPECT_EQ(c.request(http::verb::post, "/_sandbox/stats", "{}").result_int(), 405);
  EXPECT_TRUE(server.messages().empty());
  // The connection survives all of that.
  EXPECT_EQ(c.post("/v1/sms/messages", "{}").result_int(), 202);
}

TEST(SandboxServer, SameSeedSameFaultSequence) {
  auto pattern = [](std::uint64_t seed) {
    Server server(loopback(1, seed));
    Faults f;
    f.error_rate = 0.5;
    server.set_faults("*", f);
    Client c(server.port());
    std::string out;
    for (int i = 0; i < 64; ++i) out += c.post("/v1/a/messages", "{}").result_int() == 202 ? 'A' : 'E';
    return out;
  };
  const std::string a = pattern(7);
  EXPECT_EQ(a, pattern(7));
  EXPECT_NE(a.find('A'), std::string::npos);
  EXPECT_NE(a.find('E'), std::string::npos);
}

TEST(SandboxServer, ManyThreadsManyConnections) {
  Server server(loopback(4));
  constexpr int clients = 8;
  constexpr int per_client = 200;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      Client c(server.port());
      for (int i = 0; i < per_client; ++i) {
        if (c.post("/v1/p" + std::to_string(t % 2) + "/messages", "{}").result_int() == 202) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), clients * per_client);
  const json msgs = server.messages();
  ASSERT_EQ(msgs.size(), static_cast<std::size_t>(clients * per_client));
  std::set<std::string> ids;
  for (const auto& m : msgs) ids.insert(m["id"].get<std::string>());
  EXPECT_EQ(ids.size(), msgs.size());
  EXPECT_EQ(server.stats()["by_provider"]["p0"]["accepted"], clients / 2 * per_client);
}

TEST(SandboxServer, StopIsIdempotentAndDropsInFlightDelayedAnswers) {
  auto server = std::make_unique<Server>(loopback());
  Faults slow;
  slow.latency = std::chrono::milliseconds(5'000);
  server->set_faults("*", slow);
  std::atomic<bool> failed{false};
  std::thread client([&, port = server->port()] {
    Client c(port);
    try {
      (void)c.post("/v1/sms/messages", "{}");
    } catch (const std::exception&) {
      failed = true;  // the connection is closed under the pending timer
    }
  });
  // Recorded on receipt: the answer now waits on its 5 s timer.
  EXPECT_TRUE(herald::testing::eventually([&] { return server->messages().size() == 1; }));
  const auto t0 = std::chrono::steady_clock::now();
  server->stop();
  server->stop();
  EXPECT_LT(elapsed_ms(t0), 1'000.0);
  client.join();
  EXPECT_TRUE(failed.load());
  EXPECT_EQ(server->messages().size(), 1u);  // recorded on receipt, like a provider whose answer was lost
  server.reset();                            // destructor after stop() is fine
}
