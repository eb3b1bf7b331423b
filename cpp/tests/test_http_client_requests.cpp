// herald::http::Client's requests and answers on the wire, against the in-process server of
// http_client_test_support.hpp: methods, headers trimmed and folded lines joined (by Beast and by
// libcurl), interim and chunked answers, a host by name.
#include "herald/http_client.hpp"

#include <gtest/gtest.h>

#include <string>

#include "eventually.hpp"
#include "http_client_test_support.hpp"

namespace {

using namespace http_client_test;
using herald::testing::eventually;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------------------------

TEST(HttpResponse, HeaderLookupIsCaseInsensitive) {
  Response response;
  response.headers = {{"content-type", "application/json"}, {"retry-after", "5"}, {"retry-after", "9"}};
  EXPECT_EQ(response.header("Content-Type"), "application/json");
  EXPECT_EQ(response.header("RETRY-AFTER"), "5");
  EXPECT_EQ(response.header("x-missing"), "");
}

TEST(HttpClient, PostReturnsStatusBodyAndLowercasedHeaders) {
  TestServer server;
  Collector collector;
  Client client;
  Request request = post(server.url("/echo"), "hello, herald");
  request.headers = {"X-Custom: abc", "Content-Type: text/plain"};
  client.submit(std::move(request), collector.callback());
  ASSERT_TRUE(collector.wait_for(1));
  auto responses = collector.take();
  ASSERT_EQ(responses.size(), 1U);
  const Response& r = responses[0];
  EXPECT_EQ(r.transport_error, "");
  EXPECT_EQ(r.status, 201);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.body, "hello, herald");
  EXPECT_EQ(r.header("x-method"), "POST");
  EXPECT_EQ(r.header("x-seen-custom"), "abc");
  EXPECT_EQ(r.header("x-seen-expect"), "");  // 100-continue disabled
  EXPECT_EQ(r.header("X-TEST-HEADER"), "Value");
  EXPECT_GT(r.latency.count(), 0);
  bool found = false;
  for (const auto& [name, value] : r.headers) {
    EXPECT_EQ(name, lower(name));
    EXPECT_EQ(name.find("HTTP/"), std::string::npos);
    if (name == "x-test-header") found = value == "Value";
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(eventually([&] { return client.in_flight() == 0; }));
}

TEST(HttpClient, OtherMethodsAreSent) {
  TestServer server;
  Collector collector;
  Client client;
  for (const char* method : {"GET", "PUT", "DELETE", "PATCH"}) {
    Request request = post(server.url("/echo"), std::string(method) == "PUT" ? "put-body" : "");
    request.method = method;
    client.submit(std::move(request), collector.callback());
    ASSERT_TRUE(collector.wait_for(1));
    auto responses = collector.take();
    ASSERT_EQ(responses.size(), 1U);
    EXPECT_EQ(responses[0].status, 201) << method;
    EXPECT_EQ(responses[0].header("x-method"), method);
    if (std::string(method) == "PUT") {
      EXPECT_EQ(responses[0].body, "put-body");
    }
  }
}

TEST(HttpClient, HeadersFromAnInterimResponseAreDropped) {
  TestServer server;
  Collector collector;
  Client client;
  client.submit(post(server.url("/continue"), "x"), collector.callback());
  ASSERT_TRUE(collector.wait_for(1));
  auto responses = collector.take();
  EXPECT_EQ(responses[0].status, 200);
  EXPECT_EQ(responses[0].body, "ok");
  EXPECT_EQ(responses[0].header("x-final"), "yes");
  EXPECT_EQ(responses[0].header("x-interim"), "");
}

Client::Options by_curl() {
  Client::Options o;
  o.http1_on_beast = false;
  return o;
}

/// GETs `path` ("/folded" or "/folded-strict") and checks the answer's header lines: names
/// lower-cased, values trimmed, the folded line joined, the empty value kept.
void expect_trimmed_and_folded(Client& client, TestServer& server, const char* path) {
  Collector collector;
  Request request = post(server.url(path));
  request.method = "GET";
  client.submit(std::move(request), collector.callback());
  ASSERT_TRUE(collector.wait_for(1));
  const Response r = collector.take()[0];
  ASSERT_EQ(r.status, 200) << r.transport_error;
  EXPECT_EQ(r.header("x-folded"), "first second");
  EXPECT_EQ(r.header("x-padded"), "padded value");
  ASSERT_EQ(r.headers.size(), 4U);
  EXPECT_EQ(r.headers[1].first, "x-padded");
  EXPECT_EQ(r.headers[2].first, "x-empty");
  EXPECT_EQ(r.headers[2].second, "");
}

TEST(HttpClient, HeaderNamesAndValuesAreTrimmedAndFoldedLinesJoined) {
  TestServer server;
  Client client(by_curl());  // libcurl also takes blanks before a colon, which Beast refuses (below)
  expect_trimmed_and_folded(client, server, "/folded");
}

TEST(HttpClient, PlainHttpOnBeastTrimsValuesAndJoinsFoldedLines) {
  TestServer server;
  Client client;
  expect_trimmed_and_folded(client, server, "/folded-strict");
}

TEST(HttpClient, PlainHttpOnBeastRefusesAMalformedHeaderWithoutResending) {
  // RFC 9112: no blank between a field's name and its colon. Beast refuses such an answer; the
  // request is not sent again (the server may have acted on it).
  TestServer server;
  Collector collector;
  Client client;
  Request request = post(server.url("/folded"));
  request.method = "GET";
  client.submit(std::move(request), collector.callback());
  ASSERT_TRUE(collector.wait_for(1));
  const Response r = collector.take()[0];
  EXPECT_EQ(r.status, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.transport_error.find("Recv failure"), std::string::npos) << r.transport_error;
  EXPECT_EQ(server.requests(), 1U);
}

TEST(HttpClient, PlainHttpToAHostByNameIsResolved) {
  TestServer server;
  Collector collector;
  Client client;
  client.submit(post("http://localhost:" + std::to_string(server.port()) + "/echo", "by name"), collector.callback());
  ASSERT_TRUE(collector.wait_for(1, 10s));
  const Response r = collector.take()[0];
  // localhost may resolve to ::1 first, where the server does not listen: the next address is tried.
  ASSERT_EQ(r.status, 201) << r.transport_error;
  EXPECT_EQ(r.body, "by name");
}

TEST(HttpClient, AChunkedAnswerIsJoinedOnBothClients) {
  for (const bool beast : {true, false}) {
    SCOPED_TRACE(client_name(beast));
    TestServer server;
    Collector collector;
    Client::Options options = plain_http_on(beast);
    Client client(options);
    for (std::size_t i = 1; i <= 2; ++i) {  // one after the other: the second on the kept connection
      client.submit(post(server.url("/chunked"), "x"), collector.callback());
      ASSERT_TRUE(collector.wait_for(i));
    }
    for (const Response& r : collector.take()) {
      EXPECT_EQ(r.status, 200) << r.transport_error;
      EXPECT_EQ(r.body, "hello, world");
      EXPECT_EQ(r.header("x-chunked"), "yes");
    }
    EXPECT_EQ(server.connections(), 1U);
  }
}

}  // namespace
