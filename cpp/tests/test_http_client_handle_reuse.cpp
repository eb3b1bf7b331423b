// The HTTP client's reuse of one easy handle for every kind of transfer (HTTP/1.1 by Beast or by
// libcurl, h2c, SMTP), against herald's own servers and tests/smtp_server.py on loopback.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "herald/http_client.hpp"
#include "herald/http_server.hpp"
#include "herald/provider.hpp"
#include "smtp_test_support.hpp"

using namespace herald;
using namespace herald::smtp_test;

// ---------------------------------------------------------------------------------------------
// One easy handle for every kind of transfer. The client keeps a handle's options from one
// transfer to the next and resets it only when the next would not overwrite them all, so each
// kind of transfer runs here after each kind (on the client's one idle handle: the requests go
// one at a time) and must reach its server exactly as from a fresh handle.

namespace {

enum class Kind { post, post_auth, many_headers, head, get, put, del, h2c, smtp };
constexpr std::array kKinds = {Kind::post, Kind::post_auth, Kind::many_headers, Kind::head, Kind::get,
                               Kind::put,  Kind::del,       Kind::h2c,          Kind::smtp};
/// Extra request headers of Kind::many_headers: more than the client's inline header list holds.
constexpr int kManyHeaders = 20;

/// Answers every request with its own body and path, and keeps what arrived, by path.
class Recorder {
 public:
  http::Handler handler() {
    return [this](http::ServerRequest&& request, http::Respond respond) {
      http::ServerResponse response;
      response.content_type = "text/plain";
      response.headers = {{"X-Path", request.path}, {"X-Long-Header-Name", "a value longer than sixteen bytes"}};
      response.body = request.body;
      {
        // Why the lock: the servers' threads write while the test thread reads.
        std::lock_guard lock(mutex_);
        seen_[request.path] = std::move(request);
      }
      respond(std::move(response));
    };
  }
  [[nodiscard]] std::optional<http::ServerRequest> seen(const std::string& path) {
    std::lock_guard lock(mutex_);
    const auto it = seen_.find(path);
    if (it == seen_.end()) return std::nullopt;
    return it->second;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, http::ServerRequest> seen_;
};

std::size_t count_headers(const http::Response& r, std::string_view name) {
  return static_cast<std::size_t>(
      std::count_if(r.headers.begin(), r.headers.end(), [&](const auto& h) { return h.first == name; }));
}

}  // namespace

/// `on_beast`: plain http:// goes by the HTTP/1.1 client on Beast (the default), else by libcurl
/// like everything else; both must put the same request on the wire.
void every_kind_after_every_kind(bool on_beast) {
  Recorder recorder;
  http::Server http1({}, recorder.handler());
  http::H2cServer h2c({}, recorder.handler());
  SmtpServer smtp({"--user", "mailer", "--password", "s3cret-pass"});
  auto config = smtp_config(smtp.url());
  config.settings["username"] = "mailer";
  config.secrets["password"] = "s3cret-pass";
  const auto mailer = make_adapter(config);
  http::Client::Options options;
  options.http1_on_beast = on_beast;
  http::Client client(options);

  int step = 0;
  int mails = 0;
  auto run = [&](Kind kind) {
    const int i = ++step;
    SCOPED_TRACE("step " + std::to_string(i) + ", kind " + std::to_string(static_cast<int>(kind)));
    if (kind == Kind::smtp) {
      ++mails;
      const auto n = make_notification(i, "user" + std::to_string(i) + "@example.test");
      const auto r = send(client, build(*mailer, n, "message " + std::to_string(i)));
      EXPECT_EQ(r.status, 250) << r.transport_error;
      EXPECT_EQ(r.header("message-id"), "<herald-" + std::to_string(i) + ".1@herald>");
      EXPECT_EQ(r.headers.size(), 1u);
      return;
    }
    const std::string path = "/step-" + std::to_string(i);
    http::Request req;
    req.url = (kind == Kind::h2c ? h2c.url() : http1.url()) + path;
    std::string body;
    switch (kind) {
      case Kind::post:
      case Kind::post_auth:
      case Kind::many_headers:
      case Kind::h2c:
        req.method = "POST";
        body = "post-" + std::to_string(i);
        req.headers = {"Content-Type: application/json", "X-Custom: c" + std::to_string(i)};
        if (kind == Kind::many_headers) {
          for (int h = 0; h < kManyHeaders; ++h) req.headers.push_back("X-Many-" + std::to_string(h) + ": " + std::to_string(i));
        }
        break;
      case Kind::head:
        req.method = "HEAD";
        req.headers = {"X-Custom: c" + std::to_string(i)};
        break;
      case Kind::get: req.method = "GET"; break;
      case Kind::put:
        req.method = "PUT";
        body = "put-" + std::to_string(i);
        break;
      case Kind::del: req.method = "DELETE"; break;
      case Kind::smtp: break;
    }
    req.body = body;
    if (kind == Kind::post_auth) req.basic_auth = "alice:s3cr3t-value";
    if (kind == Kind::h2c) req.version = http::Request::Version::http2_prior_knowledge;

    const auto r = send(client, std::move(req));
    EXPECT_EQ(r.status, 200) << r.transport_error;
    EXPECT_EQ(r.body, body);
    EXPECT_EQ(r.header("x-path"), path);
    EXPECT_EQ(r.header("X-Long-Header-Name"), "a value longer than sixteen bytes");
    EXPECT_EQ(count_headers(r, "x-path"), 1u);  // none left over from an earlier response

    const auto seen = recorder.seen(path);
    ASSERT_TRUE(seen.has_value());
    const char* method = kind == Kind::head ? "HEAD" : kind == Kind::get ? "GET" : kind == Kind::put ? "PUT"
                         : kind == Kind::del ? "DELETE" : "POST";
    EXPECT_EQ(seen->method, method);
    EXPECT_EQ(seen->body, body);
    EXPECT_EQ(seen->http2, kind == Kind::h2c);
    EXPECT_EQ(seen->header("authorization"), kind == Kind::post_auth ? "Basic YWxpY2U6czNjcjN0LXZhbHVl" : "");
    const bool custom = kind == Kind::post || kind == Kind::post_auth || kind == Kind::many_headers || kind == Kind::h2c ||
                        kind == Kind::head;
    EXPECT_EQ(seen->header("x-custom"), custom ? "c" + std::to_string(i) : "");
    EXPECT_EQ(seen->header("expect"), "");
    for (int h = 0; h < kManyHeaders; ++h) {
      EXPECT_EQ(seen->header("x-many-" + std::to_string(h)), kind == Kind::many_headers ? std::to_string(i) : "");
    }
    const bool has_body = !body.empty();
    EXPECT_EQ(seen->header("content-length"), has_body ? std::to_string(body.size()) : "");
    if (custom && kind != Kind::head) {
      EXPECT_EQ(seen->header("content-type"), "application/json");
    }
  };
  for (const Kind first : kKinds) {
    for (const Kind second : kKinds) {
      run(first);
      run(second);
    }
  }

  const auto msgs = smtp.messages(static_cast<std::size_t>(mails));
  ASSERT_EQ(msgs.size(), static_cast<std::size_t>(mails));
  for (const auto& m : msgs) {
    EXPECT_EQ(m["authenticated"], true);
    EXPECT_EQ(m["login"], "mailer");
    const std::string to = m["rcpt_tos"][0];
    EXPECT_EQ(m["body"], "message " + std::to_string(std::atoi(to.c_str() + 4)) + "\n");
  }
}

TEST(HttpClientHandleReuse, EveryKindAfterEveryKindBehavesAsOnAFreshHandle) { every_kind_after_every_kind(false); }

TEST(HttpClientHandleReuse, PlainHttpOnBeastPutsTheSameRequestsOnTheWire) { every_kind_after_every_kind(true); }
