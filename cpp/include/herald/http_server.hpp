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

/// Settings shared by Server and H2cServer. The limits protect a server from connections that are
/// opened and then left idle or fed slowly: each such connection holds a descriptor, and at the
/// open-file limit a genuine request could otherwise not be accepted at all.
struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  ///< 0 = any free port
  unsigned threads = 1;    ///< io threads (0 counts as 1)
  std::size_t max_body_bytes = 8 << 20;  ///< larger bodies get 413 and the connection is closed
  /// Largest request head (request line and header fields) in bytes; larger gets 431 and the
  /// connection is closed. HTTP/1.1 only (nghttp2 applies its own header-list limit).
  std::size_t max_header_bytes = 16 * 1024;
  /// Time from the first byte of a request to its complete head. On expiry the peer gets 408 and
  /// the connection is closed. HTTP/1.1 only.
  std::chrono::milliseconds header_timeout{10'000};
  /// Time from the complete head to the complete body. On expiry: 408, then close. HTTP/1.1 only.
  std::chrono::milliseconds body_timeout{30'000};
  /// Time a connection may wait for the first byte of its next request (HTTP/1.1), or spend with
  /// no stream open (h2c), before it is closed without an answer.
  std::chrono::milliseconds idle_timeout{60'000};
  /// Time to write one answer; a peer that does not read it is closed. HTTP/1.1 only.
  std::chrono::milliseconds write_timeout{30'000};
  /// Connections held at once. A new connection beyond it closes the oldest idle one (HTTP/1.1:
  /// waiting for a request or for the rest of a request head; h2c: no stream open); when none is
  /// idle the new connection is closed instead. Capped at start to three quarters of the
  /// process's open-file limit (whose soft value the server first raises to the hard one), so
  /// the rest of the process keeps descriptors. 0 counts as 1.
  std::size_t max_connections = 1024;
  std::string thread_name = "herald-http";
};

/// A server's connection counters, for a metrics endpoint. Counts since start; `open` and
/// `max_connections` are current values.
struct ServerStats {
  std::uint64_t open = 0;             ///< connections held now (idle or not)
  std::uint64_t idle = 0;             ///< of those, idle now (see ServerOptions::max_connections)
  std::uint64_t accepted = 0;         ///< connections accepted
  std::uint64_t closed_idle = 0;      ///< closed by idle_timeout
  std::uint64_t closed_timeout = 0;   ///< closed by header_timeout, body_timeout or write_timeout
  std::uint64_t closed_evicted = 0;   ///< oldest idle closed to make room for a new connection
  std::uint64_t refused = 0;          ///< new connections closed at once: full and none idle
  std::uint64_t closed_too_large = 0; ///< closed after 413 or 431
  std::uint64_t accept_errors = 0;    ///< failed accepts (EMFILE/ENFILE and the like)
  std::uint64_t max_connections = 0;  ///< the limit in force (after the open-file cap)
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
  /// Connection counters. Thread-safe; takes the server's connection lock briefly.
  [[nodiscard]] ServerStats stats() const;
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
  /// Connection counters (those that apply to h2c: open, idle, accepted, closed_idle,
  /// closed_evicted, refused, accept_errors, max_connections). Thread-safe.
  [[nodiscard]] ServerStats stats() const;
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::http
