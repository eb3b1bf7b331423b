#pragma once
/// Small HTTP servers for the engine's receipt endpoint and the sandbox: HTTP/1.1 with keep-alive
/// (Beast), and HTTP/2 cleartext with prior knowledge (nghttp2) for APNs-style multiplexing.
/// Both call the same Handler, so one router serves both.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::http {

struct ServerRequest {
  std::string method;
  std::string target;  ///< as received: path and query
  std::string path;    ///< target without the query
  std::string query;   ///< after '?', or empty
  std::vector<std::pair<std::string, std::string>> headers;  ///< names lower-cased
  std::string body;
  std::string remote;  ///< "ip:port" of the peer
  bool http2 = false;
  /// Value of the first header with this lower-case name, or empty.
  [[nodiscard]] std::string header(std::string_view lower_name) const;
};

struct ServerResponse {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  ///< extra headers
  std::string body;
  std::chrono::milliseconds delay{0};  ///< wait this long before answering (a timer, not a blocked thread)
};

/// {"error":{"code":...,"message":...}} with that status (no "message" when it is empty).
[[nodiscard]] ServerResponse error_response(unsigned status, std::string_view code, std::string_view message = {});

/// Must be called exactly once, from any thread.
using Respond = std::function<void(ServerResponse)>;
/// Called on a server thread for every request. May answer at once or later through `respond`.
using Handler = std::function<void(ServerRequest&& request, Respond respond)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  ///< 0 = any free port
  unsigned threads = 1;    ///< io threads (0 counts as 1)
  std::size_t max_body_bytes = 8 << 20;  ///< larger bodies get 413
  std::string thread_name = "herald-http";
};

/// HTTP/1.1 server (Boost.Beast), keep-alive, one strand per connection.
class Server {
 public:
  /// Binds and starts serving. Throws std::runtime_error naming host:port when the bind fails.
  Server(ServerOptions options, Handler handler);
  ~Server();  ///< stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] std::string url() const;  ///< "http://host:port"
  /// Idempotent. Closes the listener and every connection and joins the threads. Answers not yet
  /// written are dropped. Not to be called from a handler.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// HTTP/2 over cleartext TCP with prior knowledge (h2c, what curl's
/// CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE speaks), many concurrent streams per connection (nghttp2).
class H2cServer {
 public:
  H2cServer(ServerOptions options, Handler handler);
  ~H2cServer();
  H2cServer(const H2cServer&) = delete;
  H2cServer& operator=(const H2cServer&) = delete;
  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] std::string url() const;
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::http
