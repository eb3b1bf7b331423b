#pragma once
/// The shell of `herald serve`'s HTTP API: a Beast server whose handler checks the key and routes
/// (api.hpp), and a small worker pool that makes the engine's blocking calls, so that a send
/// waiting for its commit never holds up the server's I/O thread and the other connections on it.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "herald/engine.hpp"
#include "herald/http_server.hpp"

namespace herald::api {

struct ApiServerOptions {
  http::ServerOptions http;  ///< host, port, max_body_bytes (413 beyond), timeouts
  /// Threads making engine calls. Concurrent sends meet in one group commit, so a few suffice.
  unsigned workers = 8;
  std::vector<std::string> key_sha256_hex;  ///< SHA-256 (lower-case hex) of every accepted API key
  std::chrono::seconds retry_after{5};      ///< Retry-After of the 503s while draining
  std::string openapi_json;  ///< served at GET /openapi.json ("" = 404)
};

/// Serves the API for `engine`, which must outlive it (or at least its drain()).
class ApiServer {
 public:
  /// Binds and starts. Throws std::runtime_error naming host:port when the bind fails.
  ApiServer(Engine& engine, ApiServerOptions options);
  ~ApiServer();  ///< stop()
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;
  [[nodiscard]] std::uint16_t port() const;
  [[nodiscard]] std::string url() const;
  /// Stops intake: every later request that would reach the engine (and /ready) gets 503 with
  /// Retry-After; returns once no engine call made for a request is running any more. After it the
  /// engine may be closed. Idempotent; /health keeps answering.
  void drain();
  /// drain(), then closes the listener and every connection and joins the threads. Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::api
