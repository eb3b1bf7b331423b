#pragma once
// Plain-HTTP/1.1 requests (http://) written and read with Boost.Beast on a thread of their own,
// beside libcurl's thread (curl_client.cpp), which keeps everything else: https, HTTP/2, h2c,
// SMTP, basic auth, proxies. Why: libcurl 7.88 spent ~21-26 CPU-µs per keep-alive POST here
// (most of it formatting the request a byte at a time), Beast ~9.5 (bench/wire_bench.py's probe);
// for herald's webhook to a sink on loopback that was the largest single cost per notification.
//
// The same contract as http::Client: every callback fires exactly once, on this client's thread;
// keep-alive connections are reused per host and port; a request on a reused connection that the
// server had already closed (nothing of an answer read) goes once more on a new connection, as
// libcurl does.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "herald/http_client.hpp"

namespace herald::http {

/// Where an http:// URL points: what a connection is opened to and what the request line names.
struct H1Target {
  std::string host;         ///< name or address; an IPv6 address without its brackets
  std::uint16_t port = 80;
  std::string host_header;  ///< the Host line's value: host as written, and the port if not 80
  std::string path;         ///< path and query ("/" when the URL has none), no fragment
};

/// The target of `url` when it is a plain http:// URL this client can send to as it is (no
/// userinfo, no bytes that would need encoding); nothing otherwise.
[[nodiscard]] std::optional<H1Target> parse_h1_target(std::string_view url);

/// The request line and header lines (to the blank line) of `r` as this client writes them, into
/// `out`; the body follows them as it is. As libcurl writes the same Request: Host and
/// "Accept: */*" first, then the caller's lines ("Name:" with nothing after removes a line,
/// "Name;" sends it empty, a caller's Host or Accept replaces ours), and for POST, or any method
/// given a body, a Content-Type (form-urlencoded unless the caller gave one, for POST) and the
/// body's Content-Length.
void write_request_head(std::string& out, const Request& r, const H1Target& t);

class H1Client {
 public:
  struct Options {
    std::size_t max_total_connections = 512;  ///< 0 = unlimited
    std::size_t max_host_connections = 0;     ///< 0 = unlimited
    std::chrono::milliseconds connect_timeout{3000};
    std::function<void()> after_answers;  ///< as Client::Options::after_answers
  };
  struct Job {
    Request request;
    H1Target target;
    Callback callback;
  };

  explicit H1Client(Options options);
  ~H1Client();  ///< stops the thread; requests not answered yet get transport_error "client stopped"
  H1Client(const H1Client&) = delete;
  H1Client& operator=(const H1Client&) = delete;

  /// Thread-safe: one hand-over to the client's thread for the whole batch.
  void submit_many(std::vector<Job> jobs);
  /// Requests submitted and not yet answered (an answer counts once its callback returned).
  [[nodiscard]] std::size_t in_flight() const { return in_flight_.load(std::memory_order_acquire); }

 private:
  struct Impl;
  std::atomic<std::size_t> in_flight_{0};
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::http
