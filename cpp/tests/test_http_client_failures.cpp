// herald::http::Client's failed requests, against the in-process server of
// http_client_test_support.hpp: an oversized body, a timeout, a refused connection, requests it
// refuses to send, and secrets kept out of the errors it reports.
#include "herald/http_client.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "http_client_test_support.hpp"

namespace {

using namespace http_client_test;
using namespace std::chrono_literals;
using namespace std::string_view_literals;

// ---------------------------------------------------------------------------------------------

TEST(HttpClient, OversizedBodyFailsTheRequest) {
  TestServer server;
  Collector collector;
  Client client;
  Request request = post(server.url("/big"));
  request.method = "GET";
  client.submit(std::move(request), collector.callback());
  ASSERT_TRUE(collector.wait_for(1));
  const Response r = collector.take()[0];
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.transport_error.find("16 MiB"), std::string::npos) << r.transport_error;
}

TEST(HttpClient, TimeoutGivesTimedOutAndStatusZero) {
  TestServer server;
  Collector collector;
  Client client;
  Request request = post(server.url("/hang"), "x");
  request.timeout = 200ms;
  client.submit(std::move(request), collector.callback());
  ASSERT_TRUE(collector.wait_for(1, 10s));
  const Response r = collector.take()[0];
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.transport_error.empty());
  EXPECT_GE(r.latency, 150ms);
  EXPECT_LT(r.latency, 5s);
}

TEST(HttpClient, ConnectionRefusedGivesTransportError) {
  Collector collector;
  Client client;
  client.submit(post("http://127.0.0.1:" + std::to_string(closed_port()) + "/x", "x"), collector.callback());
  ASSERT_TRUE(collector.wait_for(1, 10s));
  const Response r = collector.take()[0];
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.transport_error.empty());
  EXPECT_NE(r.transport_error, "client stopped");
}

TEST(HttpClient, InvalidRequestsAreAnsweredNotSent) {
  TestServer server;
  Collector collector;
  Client client;
  Request bad_header = post(server.url("/echo"));
  bad_header.headers = {"X-Custom: a\r\nX-Injected: b"};
  Request bad_method = post(server.url("/echo"));
  bad_method.method = "GET /other HTTP/1.1\r\n";
  client.submit(std::move(bad_header), collector.callback());
  client.submit(std::move(bad_method), collector.callback());
  ASSERT_TRUE(collector.wait_for(2));
  for (const auto& r : collector.take()) {
    EXPECT_EQ(r.status, 0);
    EXPECT_FALSE(r.transport_error.empty());
  }
  EXPECT_EQ(server.requests(), 0U);
}

TEST(HttpClient, BasicAuthIsSentAndSecretsStayOutOfErrors) {
  TestServer server;
  Collector collector;
  Client client;
  const std::string secret = "s3cr3t-value";
  Request request = post(server.url("/echo"), "x");
  request.basic_auth = "alice:" + secret;
  client.submit(std::move(request), collector.callback());
  ASSERT_TRUE(collector.wait_for(1));
  {
    const Response r = collector.take()[0];
    EXPECT_EQ(r.status, 201);
    EXPECT_EQ(r.header("x-seen-authorization"), "Basic YWxpY2U6czNjcjN0LXZhbHVl");  // alice:s3cr3t-value
  }

  const std::string refused = "127.0.0.1:" + std::to_string(closed_port());
  const std::vector<std::string> urls = {
      "http://bob:url-pass-123@" + refused + "/x",             // connection refused
      "http://bob:url-pass-123@127.0.0.1:99999/x",             // rejected port
      "http://bob:url-pass-123@[::1/x",                        // malformed
      "ftp://bob:url-pass-123@" + refused + "/x",              // protocol not allowed
      "http://bob:url%2Dpass%2D123@no-such-host.invalid/x",    // resolve failure, encoded userinfo
      server.url("/hang"),                                     // timeout
  };
  for (const auto& url : urls) {
    Request failing = post(url, "x");
    failing.basic_auth = "alice:" + secret;
    failing.headers = {"Authorization-Token: hdr-token-456", "X-Api-Key: key-789-abc"};
    failing.timeout = 300ms;
    client.submit(std::move(failing), collector.callback());
  }
  ASSERT_TRUE(collector.wait_for(urls.size()));
  for (const auto& r : collector.take()) {
    EXPECT_EQ(r.status, 0);
    ASSERT_FALSE(r.transport_error.empty());
    for (const std::string_view leaked :
         {std::string_view(secret), "alice:s3cr3t"sv, "url-pass-123"sv, "url%2Dpass"sv, "hdr-token-456"sv, "key-789-abc"sv}) {
      EXPECT_EQ(r.transport_error.find(leaked), std::string::npos) << r.transport_error;
    }
  }
}

// Issue 8: a header value of "1" was masked inside the IP address of the error text
// ("Failed to connect to [redacted]27.0.0.[redacted]"). Short values are no secrets.
TEST(HttpClient, RedactionKeepsAddressesIntactAndMasksRealTokens) {
  Collector collector;
  Client client;
  const auto port = std::to_string(closed_port());
  Request failing = post("http://127.0.0.1:" + port + "/x", "x");
  failing.headers = {"X-Api-Key: 1", "X-Retry: 1", "Authorization: 1", "Content-Type: application/json"};
  failing.timeout = 300ms;
  client.submit(std::move(failing), collector.callback());
  ASSERT_TRUE(collector.wait_for(1));
  const Response r = collector.take()[0];
  EXPECT_EQ(r.status, 0);
  // curl says "Failed to connect to 127.0.0.1 port N after 0 ms: Couldn't connect to server".
  EXPECT_NE(r.transport_error.find("127.0.0.1 port " + port), std::string::npos) << r.transport_error;
  EXPECT_EQ(r.transport_error.find("[redacted]"), std::string::npos) << r.transport_error;
}

TEST(HttpClient, RedactMasksWholeSecretTokensOnly) {
  Request request = post("http://bob:url-pass-123@127.0.0.1:1/x", "x");
  request.basic_auth = "AC0123456789:auth-token-abcdef";
  request.headers = {"Authorization: Bearer sk-live-0123456789", "X-Api-Key: key-789-abc", "X-Herald-Id: 1",
                     "Content-Type: application/json"};
  using herald::http::redact;
  EXPECT_EQ(redact("token sk-live-0123456789 refused", request), "token [redacted] refused");
  EXPECT_EQ(redact("header 'Bearer sk-live-0123456789'", request), "header '[redacted]'");
  EXPECT_EQ(redact("key=key-789-abc;", request), "key=[redacted];");
  EXPECT_EQ(redact("login AC0123456789:auth-token-abcdef failed", request), "login [redacted] failed");
  EXPECT_EQ(redact("pass auth-token-abcdef", request), "pass [redacted]");
  EXPECT_EQ(redact("url-pass-123@127.0.0.1", request), "[redacted]@127.0.0.1");
  // Not secrets: too short (bob, 1), not a credential header (Content-Type), not a whole token.
  EXPECT_EQ(redact("bob at 127.0.0.1 port 1", request), "bob at 127.0.0.1 port 1");
  EXPECT_EQ(redact("Content-Type application/json", request), "Content-Type application/json");
  EXPECT_EQ(redact("xkey-789-abcx", request), "xkey-789-abcx");
}

}  // namespace
