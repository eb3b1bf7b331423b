// Tests for herald::http::Server on 127.0.0.1, driven by the project's libcurl Client and by a
// plain synchronous Beast client where the test needs control over one connection.
#include "herald/http_server.hpp"

#include "herald/http_client.hpp"
#include "eventually.hpp"

#include <gtest/gtest.h>

#include <pthread.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using herald::http::Client;
using herald::http::Respond;
using herald::http::Server;
using herald::http::ServerOptions;
using herald::http::ServerRequest;
using herald::http::ServerResponse;
using namespace std::chrono_literals;

/// One request through `client`, waited for.
herald::http::Response fetch(Client& client, herald::http::Request req) {
  auto done = std::make_shared<std::promise<herald::http::Response>>();
  auto fut = done->get_future();
  client.submit(std::move(req), [done](herald::http::Response&& r) { done->set_value(std::move(r)); });
  return fut.get();
}

herald::http::Request get(const std::string& url) {
  herald::http::Request r;
  r.method = "GET";
  r.url = url;
  r.timeout = 10s;
  return r;
}

ServerResponse text(unsigned status, std::string body) {
  ServerResponse r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

/// A blocking HTTP/1.1 connection to the server, for tests about one connection's behaviour.
class RawConnection {
 public:
  explicit RawConnection(std::uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
  }
  void send(const std::string& method, const std::string& target, std::string body = {}, bool close = false) {
    bhttp::request<bhttp::string_body> req{bhttp::string_to_verb(method), target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.body() = std::move(body);
    req.keep_alive(!close);
    req.prepare_payload();
    bhttp::write(socket_, req);
  }
  bhttp::response<bhttp::string_body> receive() {
    bhttp::response<bhttp::string_body> res;
    bhttp::read(socket_, buffer_, res);
    return res;
  }
  /// True when the server has closed its side (a read sees end of stream).
  bool closed_by_peer() {
    char c = 0;
    beast::error_code ec;
    socket_.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof;
  }
  void close() {
    beast::error_code ignored;
    socket_.close(ignored);
  }

 private:
  asio::io_context io_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

TEST(HttpServer, EchoesMethodPathQueryHeadersAndBody) {
  std::mutex mu;
  ServerRequest seen;
  std::string thread_name;
  ServerOptions opts;
  opts.thread_name = "herald-test-io";
  Server server(opts, [&](ServerRequest&& req, Respond respond) {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof name);
    {
      std::lock_guard lock(mu);
      seen = req;
      thread_name = name;
    }
    ServerResponse r = text(201, req.method + " " + req.path + " " + req.query + " " + req.header("x-test") + " " + req.body);
    r.headers.emplace_back("X-Reply", "yes");
    respond(std::move(r));
  });
  Client client;
  herald::http::Request req;
  req.method = "PUT";
  req.url = server.url() + "/a/b?x=1&y=a?b";
  req.headers = {"X-Test: Hello There", "Content-Type: application/octet-stream"};
  req.body = "payload\n";
  const auto res = fetch(client, req);
  ASSERT_EQ(res.status, 201) << res.transport_error;
  EXPECT_EQ(res.body, "PUT /a/b x=1&y=a?b Hello There payload\n");
  EXPECT_EQ(res.header("x-reply"), "yes");
  EXPECT_EQ(res.header("content-type"), "text/plain");
  EXPECT_EQ(res.header("content-length"), std::to_string(res.body.size()));

  std::lock_guard lock(mu);
  EXPECT_EQ(seen.target, "/a/b?x=1&y=a?b");
  EXPECT_EQ(seen.header("content-type"), "application/octet-stream");
  EXPECT_EQ(seen.header("X-Test"), "");  // lookups take lower-case names
  EXPECT_EQ(seen.header("missing"), "");
  for (const auto& [name, value] : seen.headers) {
    for (const char c : name) EXPECT_FALSE(c >= 'A' && c <= 'Z') << name;
  }
  EXPECT_EQ(seen.remote.rfind("127.0.0.1:", 0), 0u) << seen.remote;
  EXPECT_FALSE(seen.http2);
  EXPECT_EQ(thread_name, "herald-test-io");
}

TEST(HttpServer, AnswersFromAnotherThreadAndIgnoresASecondAnswer) {
  std::vector<std::thread> workers;
  std::mutex mu;
  Server server(ServerOptions{}, [&](ServerRequest&& req, Respond respond) {
    std::lock_guard lock(mu);
    // The worker answers once this handler has let go of the request (holds no lock any more).
    auto handler_done = std::make_shared<std::promise<void>>();
    workers.emplace_back([respond, path = req.path, done = handler_done->get_future()] {
      done.wait();
      respond(text(200, "first " + path));
      respond(text(500, "second"));  // ignored
    });
    handler_done->set_value();
  });
  // Two requests on one connection: a stray second answer would corrupt the second exchange.
  RawConnection conn(server.port());
  conn.send("GET", "/one");
  auto res = conn.receive();
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), "first /one");
  conn.send("GET", "/two");
  res = conn.receive();
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(res.body(), "first /two");
  std::lock_guard lock(mu);
  for (auto& t : workers) t.join();
}

TEST(HttpServer, HonoursDelayWithoutBlockingTheIoThread) {
  ServerOptions opts;
  opts.threads = 1;
  std::promise<void> slow_arrived;
  Server server(opts, [&](ServerRequest&& req, Respond respond) {
    ServerResponse r = text(200, req.path);
    if (req.path == "/slow") r.delay = 300ms;
    respond(std::move(r));
    if (req.path == "/slow") slow_arrived.set_value();
  });
  Client client;
  const auto start = std::chrono::steady_clock::now();
  auto slow_done = std::make_shared<std::promise<std::pair<herald::http::Response, std::chrono::steady_clock::time_point>>>();
  auto slow = slow_done->get_future();
  client.submit(get(server.url() + "/slow"), [slow_done](herald::http::Response&& r) {
    slow_done->set_value({std::move(r), std::chrono::steady_clock::now()});
  });
  ASSERT_EQ(slow_arrived.get_future().wait_for(10s), std::future_status::ready);
  // The one io thread is free while the slow answer waits on its timer.
  const auto fast = fetch(client, get(server.url() + "/fast"));
  const auto fast_at = std::chrono::steady_clock::now();
  EXPECT_EQ(fast.status, 200) << fast.transport_error;
  const auto [slow_res, slow_at] = slow.get();
  EXPECT_EQ(slow_res.status, 200) << slow_res.transport_error;
  EXPECT_EQ(slow_res.body, "/slow");
  EXPECT_GE(slow_at - start, 300ms);
  EXPECT_LT(fast_at, slow_at);
}

TEST(HttpServer, HandlerExceptionGives500) {
  Server server(ServerOptions{}, [](ServerRequest&&, Respond) { throw std::runtime_error("boom \"quoted\""); });
  Client client;
  const auto res = fetch(client, get(server.url() + "/x"));
  EXPECT_EQ(res.status, 500) << res.transport_error;
  EXPECT_EQ(res.body, R"({"error":{"code":"internal","message":"boom \"quoted\""}})");
  EXPECT_EQ(res.header("content-type"), "application/json");
}

TEST(HttpServer, DroppedRespondGives500) {
  Server server(ServerOptions{}, [](ServerRequest&&, Respond) {});
  Client client;
  const auto res = fetch(client, get(server.url() + "/x"));
  EXPECT_EQ(res.status, 500) << res.transport_error;
  EXPECT_NE(res.body.find(R"("code":"internal")"), std::string::npos) << res.body;
}

TEST(HttpServer, OverLimitBodyGets413AndClose) {
  ServerOptions opts;
  opts.max_body_bytes = 1024;
  Server server(opts, [](ServerRequest&& req, Respond respond) {
    respond(text(200, std::to_string(req.body.size())));
  });
  Client client;
  herald::http::Request req;
  req.url = server.url() + "/up";
  req.body = std::string(1024, 'a');
  auto res = fetch(client, req);
  EXPECT_EQ(res.status, 200) << res.transport_error;
  EXPECT_EQ(res.body, "1024");

  req.body = std::string(4096, 'b');
  res = fetch(client, req);
  EXPECT_EQ(res.status, 413) << res.transport_error;
  EXPECT_EQ(res.body, R"({"error":{"code":"too_large"}})");

  // A large body the client is still sending when the answer comes.
  req.body = std::string(8 << 20, 'c');
  res = fetch(client, req);
  EXPECT_EQ(res.status, 413) << res.transport_error;

  RawConnection conn(server.port());
  conn.send("POST", "/up", std::string(2000, 'd'));
  const auto raw = conn.receive();
  EXPECT_EQ(raw.result_int(), 413u);
  EXPECT_FALSE(raw.keep_alive());
  EXPECT_TRUE(conn.closed_by_peer());
}

TEST(HttpServer, KeepAliveReusesOneConnection) {
  std::mutex mu;
  std::set<std::string> remotes;
  Server server(ServerOptions{}, [&](ServerRequest&& req, Respond respond) {
    {
      std::lock_guard lock(mu);
      remotes.insert(req.remote);
    }
    respond(text(200, req.query));
  });
  Client client;
  for (int i = 0; i < 25; ++i) {
    const auto res = fetch(client, get(server.url() + "/k?" + std::to_string(i)));
    ASSERT_EQ(res.status, 200) << res.transport_error;
    EXPECT_EQ(res.body, std::to_string(i));
  }
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(remotes.size(), 1u);
  }

  // "Connection: close" is honoured: answered, then the server hangs up.
  RawConnection conn(server.port());
  conn.send("GET", "/k?a");
  EXPECT_TRUE(conn.receive().keep_alive());
  conn.send("GET", "/k?b", {}, /*close=*/true);
  const auto last = conn.receive();
  EXPECT_EQ(last.body(), "b");
  EXPECT_FALSE(last.keep_alive());
  EXPECT_TRUE(conn.closed_by_peer());
}

TEST(HttpServer, AnswersManyConcurrentRequests) {
  ServerOptions opts;
  opts.threads = 2;
  std::vector<std::thread> workers;
  std::mutex workers_mu;
  Server server(opts, [&](ServerRequest&& req, Respond respond) {
    // Half answered at once on the io thread, half later from another thread.
    if (req.query.back() % 2 == 0) {
      respond(text(200, req.query));
      return;
    }
    std::lock_guard lock(workers_mu);
    workers.emplace_back([respond, q = req.query] { respond(text(200, q)); });
  });
  Client client;
  constexpr int kCount = 200;
  std::mutex mu;
  std::condition_variable cv;
  int answered = 0;
  int correct = 0;
  for (int i = 0; i < kCount; ++i) {
    const std::string id = std::to_string(i);
    client.submit(get(server.url() + "/c?" + id), [&, id](herald::http::Response&& r) {
      std::lock_guard lock(mu);
      ++answered;
      if (r.status == 200 && r.body == id) ++correct;
      cv.notify_one();
    });
  }
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 30s, [&] { return answered == kCount; }));
  EXPECT_EQ(correct, kCount);
  lock.unlock();
  std::lock_guard wlock(workers_mu);
  for (auto& t : workers) t.join();
}

TEST(HttpServer, ClientGoneBeforeAnswerIsSafe) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Respond> held;
  Server server(ServerOptions{}, [&](ServerRequest&& req, Respond respond) {
    if (req.path == "/hold") {
      std::lock_guard lock(mu);
      held.push_back(std::move(respond));
      cv.notify_all();
      return;
    }
    respond(text(200, "ok"));
  });
  {
    RawConnection conn(server.port());
    conn.send("GET", "/hold");
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return held.size() == 1; }));
    conn.close();
  }
  // No wait for the close to reach the server: it is sent before the answer is given, and the
  // server must let the connection go either way (its write fails, or its next read ends).
  {
    std::lock_guard lock(mu);
    held.front()(text(200, "nobody listens"));
  }
  EXPECT_TRUE(herald::testing::eventually([&] { return server.stats().open == 0; })) << server.stats().open;
  Client client;
  const auto res = fetch(client, get(server.url() + "/other"));
  EXPECT_EQ(res.status, 200) << res.transport_error;
}

TEST(HttpServer, StopWithAWaitingRequestReturnsPromptly) {
  std::mutex mu;
  std::condition_variable cv;
  Respond held;
  auto server = std::make_unique<Server>(ServerOptions{}, [&](ServerRequest&&, Respond respond) {
    std::lock_guard lock(mu);
    held = std::move(respond);
    cv.notify_all();
  });
  Client client;
  auto done = std::make_shared<std::promise<herald::http::Response>>();
  auto fut = done->get_future();
  client.submit(get(server->url() + "/never"), [done](herald::http::Response&& r) { done->set_value(std::move(r)); });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 5s, [&] { return static_cast<bool>(held); }));
  }
  const auto start = std::chrono::steady_clock::now();
  server->stop();
  server->stop();  // idempotent
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  // The client sees the connection close rather than waiting for its timeout.
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(fut.get().status, 0);
  held(text(200, "too late"));  // a no-op after stop
  server.reset();
  held(text(200, "later still"));  // and after the server is gone
  held = nullptr;
}

TEST(HttpServer, PortUrlAndBindFailure) {
  Server server(ServerOptions{}, [](ServerRequest&&, Respond respond) { respond(text(200, "")); });
  ASSERT_NE(server.port(), 0);
  EXPECT_EQ(server.url(), "http://127.0.0.1:" + std::to_string(server.port()));
  Client client;
  const auto res = fetch(client, get(server.url() + "/"));
  EXPECT_EQ(res.status, 200) << res.transport_error;
  EXPECT_EQ(res.body, "");

  ServerOptions taken;
  taken.port = server.port();
  try {
    Server second(taken, [](ServerRequest&&, Respond) {});
    FAIL() << "bind to a port in use succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(server.port())), std::string::npos) << e.what();
  }
}

}  // namespace
