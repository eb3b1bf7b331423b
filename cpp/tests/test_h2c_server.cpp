// Tests for herald::http::H2cServer through the project's own client (libcurl, HTTP/2 with prior
// knowledge) on 127.0.0.1.
#include "herald/http_client.hpp"
#include "herald/http_server.hpp"

#include <gtest/gtest.h>

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

using herald::http::Client;
using herald::http::H2cServer;
using herald::http::Request;
using herald::http::Respond;
using herald::http::Response;
using herald::http::ServerOptions;
using herald::http::ServerRequest;
using herald::http::ServerResponse;
using namespace std::chrono_literals;

/// First value of a lower-case header name (ServerRequest::header lives in another file).
std::string find_header(const ServerRequest& request, const std::string& name) {
  for (const auto& [key, value] : request.headers) {
    if (key == name) return value;
  }
  return {};
}

Request h2_request(const std::string& url, std::string body = {}) {
  Request request;
  request.method = "POST";
  request.url = url;
  request.body = std::move(body);
  request.version = Request::Version::http2_prior_knowledge;
  request.timeout = 10s;
  return request;
}

Response call(Client& client, Request request) {
  auto promise = std::make_shared<std::promise<Response>>();
  auto future = promise->get_future();
  client.submit(std::move(request), [promise](Response&& r) { promise->set_value(std::move(r)); });
  if (future.wait_for(20s) != std::future_status::ready) {
    ADD_FAILURE() << "no answer within 20 s";
    return {};
  }
  return future.get();
}

ServerOptions loopback(unsigned threads = 1) {
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.threads = threads;
  return options;
}

/// Echoes the request back: body as body, the rest in x- headers.
void echo(ServerRequest&& request, const Respond& respond) {
  ServerResponse response;
  response.status = 201;
  response.content_type = "text/plain";
  response.headers = {{"X-Method", request.method},  {"x-path", request.path},
                      {"x-query", request.query},    {"x-target", request.target},
                      {"x-test", find_header(request, "x-test")},
                      {"x-http2", request.http2 ? "yes" : "no"},
                      {"x-remote", request.remote}};
  response.body = std::move(request.body);
  respond(std::move(response));
}

TEST(H2cServerTest, EchoesMethodPathQueryHeaderAndBody) {
  H2cServer server(loopback(), [](ServerRequest&& request, Respond respond) {
    echo(std::move(request), respond);
  });
  Client client;
  Request request = h2_request(server.url() + "/3/device/abc?x=1&y=two", R"({"aps":{}})");
  request.method = "PUT";
  request.headers = {"X-Test: hello there", "apns-topic: com.example"};
  const Response response = call(client, std::move(request));
  ASSERT_EQ(response.transport_error, "");
  EXPECT_EQ(response.status, 201);
  EXPECT_EQ(response.body, R"({"aps":{}})");
  EXPECT_EQ(response.header("x-method"), "PUT");
  EXPECT_EQ(response.header("x-path"), "/3/device/abc");
  EXPECT_EQ(response.header("x-query"), "x=1&y=two");
  EXPECT_EQ(response.header("x-target"), "/3/device/abc?x=1&y=two");
  EXPECT_EQ(response.header("x-test"), "hello there");
  EXPECT_EQ(response.header("x-http2"), "yes");
  EXPECT_EQ(response.header("content-type"), "text/plain");
  EXPECT_EQ(response.header("content-length"), "10");
  EXPECT_EQ(response.header("x-remote").rfind("127.0.0.1:", 0), 0U) << response.header("x-remote");
  EXPECT_EQ(server.url(), "http://127.0.0.1:" + std::to_string(server.port()));
}

TEST(H2cServerTest, GetWithoutBodyAndEmptyAnswer) {
  H2cServer server(loopback(), [](ServerRequest&& request, Respond respond) {
    ServerResponse response;
    response.status = request.method == "GET" && request.body.empty() ? 204 : 500;
    response.content_type.clear();
    respond(std::move(response));
  });
  Client client;
  Request request = h2_request(server.url() + "/ping");
  request.method = "GET";
  const Response response = call(client, std::move(request));
  ASSERT_EQ(response.transport_error, "");
  EXPECT_EQ(response.status, 204);
  EXPECT_EQ(response.body, "");
}

TEST(H2cServerTest, FiveHundredConcurrentRequestsShareFewConnections) {
  std::mutex mutex;
  std::set<std::string> remotes;
  std::atomic<int> seen{0};
  H2cServer server(loopback(2), [&](ServerRequest&& request, Respond respond) {
    {
      std::lock_guard lock(mutex);
      remotes.insert(request.remote);
    }
    ++seen;
    ServerResponse response;
    response.body = request.body;
    response.delay = 50ms;  // keeps them in flight together
    respond(std::move(response));
  });
  Client client;
  constexpr int kCount = 500;
  std::mutex done_mutex;
  std::condition_variable done_cv;
  int done = 0;
  int ok = 0;
  std::string first_error;  // of the first request that failed, for the failure's message
  std::vector<std::pair<Request, herald::http::Callback>> batch;
  for (int i = 0; i < kCount; ++i) {
    const std::string body = "n=" + std::to_string(i);
    batch.emplace_back(h2_request(server.url() + "/n", body), [&, body](Response&& r) {
      std::lock_guard lock(done_mutex);
      if (r.status == 200 && r.body == body) {
        ++ok;
      } else if (first_error.empty()) {
        first_error = std::to_string(r.status) + " " + r.transport_error;
      }
      ++done;
      done_cv.notify_all();
    });
  }
  const auto started = std::chrono::steady_clock::now();
  client.submit_many(std::move(batch));
  {
    std::unique_lock lock(done_mutex);
    ASSERT_TRUE(done_cv.wait_for(lock, 30s, [&] { return done == kCount; })) << done;
    EXPECT_EQ(ok, kCount) << first_error;
  }
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(seen.load(), kCount);
  std::lock_guard lock(mutex);
  EXPECT_GE(remotes.size(), 1U);
  EXPECT_LE(remotes.size(), 4U);
  // 500 answers delayed 50 ms each: serialised on 4 connections they would take >= 6 s.
  EXPECT_LT(elapsed, 5s);
}

TEST(H2cServerTest, DelayedAnswersCompleteOutOfOrder) {
  std::promise<void> slow_arrived;
  H2cServer server(loopback(), [&](ServerRequest&& request, Respond respond) {
    ServerResponse response;
    response.body = request.path;
    if (request.path == "/slow") {
      response.delay = 400ms;
      respond(std::move(response));
      slow_arrived.set_value();
    } else {
      // Answered from a foreign thread.
      std::thread([respond, response]() mutable { respond(std::move(response)); }).detach();
    }
  });
  Client client;
  std::mutex mutex;
  std::vector<std::string> order;
  std::condition_variable cv;
  auto record = [&](Response&& r) {
    std::lock_guard lock(mutex);
    order.push_back(std::to_string(r.status) + " " + r.body);
    cv.notify_all();
  };
  const auto started = std::chrono::steady_clock::now();
  client.submit(h2_request(server.url() + "/slow"), record);
  // The slow one reaches the server first.
  ASSERT_EQ(slow_arrived.get_future().wait_for(10s), std::future_status::ready);
  client.submit(h2_request(server.url() + "/fast"), record);
  std::unique_lock lock(mutex);
  ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return order.size() == 2; }));
  EXPECT_EQ(order[0], "200 /fast");
  EXPECT_EQ(order[1], "200 /slow");
  EXPECT_GE(std::chrono::steady_clock::now() - started, 400ms);
}

TEST(H2cServerTest, OneMebibyteBodyRoundTrip) {
  H2cServer server(loopback(), [](ServerRequest&& request, Respond respond) {
    echo(std::move(request), respond);
  });
  Client client;
  std::string body(std::size_t{1} << 20, '\0');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + (i * 7) % 26);
  // Two at once: the connection window must carry both.
  auto first = std::async(std::launch::async, [&] { return call(client, h2_request(server.url() + "/a", body)); });
  const Response second = call(client, h2_request(server.url() + "/b", body));
  const Response one = first.get();
  ASSERT_EQ(one.transport_error, "");
  ASSERT_EQ(second.transport_error, "");
  EXPECT_EQ(one.status, 201);
  EXPECT_EQ(one.body.size(), body.size());
  EXPECT_TRUE(one.body == body);
  EXPECT_TRUE(second.body == body);
}

TEST(H2cServerTest, BodyOverLimitGets413) {
  std::atomic<int> handled{0};
  ServerOptions options = loopback();
  options.max_body_bytes = 1000;
  H2cServer server(options, [&](ServerRequest&& request, Respond respond) {
    ++handled;
    echo(std::move(request), respond);
  });
  Client client;
  const Response big = call(client, h2_request(server.url() + "/x", std::string(200000, 'x')));
  EXPECT_EQ(big.status, 413) << big.transport_error;
  EXPECT_EQ(handled.load(), 0);
  const Response small = call(client, h2_request(server.url() + "/x", std::string(1000, 'x')));
  EXPECT_EQ(small.status, 201) << small.transport_error;
  EXPECT_EQ(handled.load(), 1);
}

TEST(H2cServerTest, AnswerAfterClientGaveUpIsDropped) {
  std::mutex mutex;
  std::vector<Respond> parked;
  std::string parked_remote;
  H2cServer server(loopback(), [&](ServerRequest&& request, Respond respond) {
    if (request.path == "/park") {
      std::lock_guard lock(mutex);
      parked.push_back(std::move(respond));
      parked_remote = request.remote;
      return;
    }
    echo(std::move(request), respond);
  });
  Client client;
  Request request = h2_request(server.url() + "/park");
  request.timeout = 300ms;
  const Response timed_out = call(client, std::move(request));
  EXPECT_EQ(timed_out.status, 0);
  EXPECT_TRUE(timed_out.timed_out) << timed_out.transport_error;
  {
    std::lock_guard lock(mutex);
    ASSERT_EQ(parked.size(), 1U);
    ServerResponse late;
    late.body = "late";
    parked[0](late);
    parked[0](late);  // a second answer is dropped too
  }
  // No wait needed: both late answers are queued on the connection's strand before the next
  // request is sent, and that request comes on the same connection (checked below), so the
  // strand handles them before it.
  const Response next = call(client, h2_request(server.url() + "/echo", "again"));
  EXPECT_EQ(next.status, 201) << next.transport_error;
  EXPECT_EQ(next.body, "again");
  std::lock_guard lock(mutex);
  EXPECT_EQ(next.header("x-remote"), parked_remote);
}

TEST(H2cServerTest, StopWithUnansweredRequestReturnsPromptly) {
  std::promise<Respond> arrived;
  auto arrived_future = arrived.get_future();
  auto server = std::make_unique<H2cServer>(loopback(2), [&](ServerRequest&&, Respond respond) {
    arrived.set_value(std::move(respond));
  });
  Client client;
  std::promise<Response> answered;
  auto answered_future = answered.get_future();
  client.submit(h2_request(server->url() + "/never"),
                [&](Response&& r) { answered.set_value(std::move(r)); });
  ASSERT_EQ(arrived_future.wait_for(10s), std::future_status::ready);
  Respond respond = arrived_future.get();

  const auto started = std::chrono::steady_clock::now();
  server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s);
  server->stop();  // idempotent

  ASSERT_EQ(answered_future.wait_for(5s), std::future_status::ready);
  const Response response = answered_future.get();
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.transport_error.empty());
  EXPECT_FALSE(response.timed_out);

  respond(ServerResponse{});  // after stop: dropped, no crash
  server.reset();
}

TEST(H2cServerTest, Http11RequestFailsCleanly) {
  std::atomic<int> handled{0};
  H2cServer server(loopback(), [&](ServerRequest&& request, Respond respond) {
    ++handled;
    echo(std::move(request), respond);
  });
  Client client;
  Request request = h2_request(server.url() + "/x", "hello");
  request.version = Request::Version::http1_1;
  request.timeout = 5s;
  const auto started = std::chrono::steady_clock::now();
  const Response response = call(client, std::move(request));
  EXPECT_EQ(response.status, 0);
  EXPECT_FALSE(response.transport_error.empty());
  EXPECT_FALSE(response.timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  EXPECT_EQ(handled.load(), 0);
  // The server still serves h2c afterwards.
  const Response ok = call(client, h2_request(server.url() + "/x", "hi"));
  EXPECT_EQ(ok.status, 201) << ok.transport_error;
}

TEST(H2cServerTest, HandlerExceptionBecomes500) {
  H2cServer server(loopback(), [](ServerRequest&&, Respond) -> void {
    throw std::runtime_error("boom");
  });
  Client client;
  const Response response = call(client, h2_request(server.url() + "/x"));
  EXPECT_EQ(response.status, 500) << response.transport_error;
}

TEST(H2cServerTest, BindFailureNamesHostAndPort) {
  H2cServer first(loopback(), [](ServerRequest&& request, Respond respond) {
    echo(std::move(request), respond);
  });
  ServerOptions options = loopback();
  options.port = first.port();
  try {
    H2cServer second(options, [](ServerRequest&&, Respond) {});
    FAIL() << "second bind on one port succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(first.port())),
              std::string::npos)
        << e.what();
  }
}

}  // namespace

namespace {

TEST(H2cServerTest, ClientRecoversWhenItsConnectionIsGone) {
  auto handler = [](ServerRequest&& request, Respond respond) { echo(std::move(request), respond); };
  auto first = std::make_unique<H2cServer>(loopback(), handler);
  const std::uint16_t port = first->port();
  Client client;
  const std::string url = first->url() + "/x";
  EXPECT_EQ(call(client, h2_request(url, "one")).status, 201);
  EXPECT_EQ(call(client, h2_request(url, "two")).status, 201);  // rides the open connection
  first.reset();  // closes the client's connection
  ServerOptions options = loopback();
  options.port = port;
  H2cServer second(options, handler);
  const Response again = call(client, h2_request(url, "three"));
  EXPECT_EQ(again.status, 201) << again.transport_error;
  EXPECT_EQ(again.body, "three");
}

}  // namespace
