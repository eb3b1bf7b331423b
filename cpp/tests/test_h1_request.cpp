// The HTTP/1.1 client writes each request's head itself (write_request_head). The reference here
// is how it wrote them before, through Boost.Beast's message and serializer: for every method,
// header list and body below, both must put the same bytes on the wire.
#include "../src/h1_client.hpp"

#include <sstream>
#include <string>
#include <vector>

#include <boost/beast/http.hpp>
#include <gtest/gtest.h>

#include "../src/http_text.hpp"

namespace {

namespace bhttp = boost::beast::http;
using herald::http::H1Target;
using herald::http::Request;
using herald::http::text::iequals;
using herald::http::text::trim;

boost::beast::string_view bsv(std::string_view s) { return {s.data(), s.size()}; }

/// The request as the client built it on Beast's message, serialized by Beast.
std::string beast_reference(const Request& r, const H1Target& t) {
  bhttp::request<bhttp::string_body> out;
  out.version(11);
  const bhttp::verb verb = bhttp::string_to_verb(r.method);
  if (verb == bhttp::verb::unknown) {
    out.method_string(r.method);
  } else {
    out.method(verb);
  }
  out.target(t.path);
  out.set(bhttp::field::host, t.host_header);
  out.set(bhttp::field::accept, "*/*");
  bool content_type = false;
  for (const std::string& line : r.headers) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) {
      if (!line.empty() && line.back() == ';') out.insert(bsv(trim(std::string_view(line).substr(0, line.size() - 1))), "");
      continue;
    }
    const std::string_view name = trim(std::string_view(line).substr(0, colon));
    const std::string_view value = trim(std::string_view(line).substr(colon + 1));
    if (name.empty()) continue;
    if (value.empty()) {
      out.erase(bsv(name));
      continue;
    }
    if (iequals(name, "Host") || iequals(name, "Accept")) out.erase(bsv(name));
    if (iequals(name, "Content-Type")) content_type = true;
    out.insert(bsv(name), bsv(value));
  }
  const bool post = verb == bhttp::verb::post;
  if (post || !r.body.empty()) {
    if (post && !content_type) out.set(bhttp::field::content_type, "application/x-www-form-urlencoded");
    out.body() = r.body;
    out.content_length(out.body().size());
  }
  std::ostringstream wire;
  wire << out;
  return wire.str();
}

TEST(H1Request, TheHeadAndBodyAreTheBytesBeastWroteForEveryCase) {
  const std::vector<std::string> methods = {"POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "PROPFIND"};
  const std::vector<std::vector<std::string>> header_lists = {
      {},
      {"Content-Type: application/json", "Idempotency-Key: herald-42", "X-Herald-Signature: t=1,v1=abc"},
      {"content-type:text/plain", "X-Custom:  padded value \t"},
      {"Host: other.example:8080", "Accept: application/json"},
      {"Accept:", "Host:"},                               // our lines removed
      {"X-Empty;", "X-Also-Empty ;", "no-colon-no-semicolon"},
      {"X-A: 1", "X-A: 2", "x-a:", "X-B: 3"},             // a removal takes every earlier line of the name
      {"Content-Type:", "Content-Length: 999"},          // removed, then ours; a caller's length replaced
      {": no name", "X-Last: value"},
      {"Authorization: Bearer abc.def.ghi", "ACCEPT: text/html", "accept: */*; q=0.5"},
  };
  const std::vector<std::string> bodies = {"", "{\"id\":\"1\",\"text\":\"hello\"}", std::string(5000, 'b')};
  const std::vector<H1Target> targets = {
      H1Target{"127.0.0.1", 8080, "127.0.0.1:8080", "/hook?x=1&y=2"},
      H1Target{"::1", 80, "[::1]", "/"},
  };
  std::size_t cases = 0;
  std::string head;
  for (const auto& method : methods) {
    for (const auto& headers : header_lists) {
      for (const auto& body : bodies) {
        for (const auto& target : targets) {
          Request r;
          r.method = method;
          r.headers = headers;
          r.body = body;
          herald::http::write_request_head(head, r, target);
          EXPECT_EQ(head + r.body, beast_reference(r, target)) << method << " " << headers.size() << " " << body.size();
          ++cases;
        }
      }
    }
  }
  EXPECT_EQ(cases, 7U * 10U * 3U * 2U);
}

TEST(H1Request, APostWithoutContentTypeIsFormEncodedAndCarriesItsLength) {
  Request r;
  r.body = "a=1";
  std::string head;
  herald::http::write_request_head(head, r, H1Target{"h", 80, "h", "/p"});
  EXPECT_EQ(head,
            "POST /p HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 3\r\n\r\n");
}

}  // namespace
