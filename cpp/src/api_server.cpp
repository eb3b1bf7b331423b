#include "herald/api_server.hpp"

#include <condition_variable>
#include <mutex>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include "herald/api.hpp"
#include "herald/errors.hpp"
#include "herald/thread_name.hpp"

namespace herald::api {

namespace {

/// Everything under /v1 needs the key, whatever its answer would be (a bad limit, an unknown
/// endpoint, another method): without one nothing about /v1 is told. Outside /v1 there are only
/// the open endpoints, so another path or method there is answered (404, 405) without a key.
bool key_required(const Route& r, std::string_view path) {
  if (path.starts_with("/v1/")) return true;
  return needs_key(r.action) && r.action != Action::not_found && r.action != Action::bad_method;
}

}  // namespace

struct ApiServer::Impl {
  Impl(Engine& e, ApiServerOptions o) : engine(e), options(std::move(o)), pool(options.workers == 0 ? 1 : options.workers) {
    for (unsigned i = 0; i < (options.workers == 0 ? 1 : options.workers); ++i) {
      boost::asio::post(pool, [] { detail::name_this_thread("herald-api"); });
    }
  }

  void handle(http::ServerRequest&& req, const http::Respond& respond) {
    Route r;
    std::exception_ptr refused;  // a bad query: told only to a caller with a key
    try {
      r = route(req.method, req.path, req.query);
    } catch (...) {
      refused = std::current_exception();
    }
    if (key_required(r, req.path)) {
      switch (check_key(req.header("authorization"), options.key_sha256_hex)) {
        case KeyCheck::ok: break;
        case KeyCheck::missing: {
          auto resp = api_error(401, "Unauthorized", "an API key is required: Authorization: Bearer <key>");
          resp.headers.emplace_back("WWW-Authenticate", "Bearer");
          respond(std::move(resp));
          return;
        }
        case KeyCheck::wrong: respond(api_error(403, "Forbidden", "the API key is not valid")); return;
      }
    }
    if (refused) {
      respond(error_for(refused));
      return;
    }
    if (r.action == Action::openapi) {
      if (options.openapi_json.empty()) {
        respond(api_error(404, "NoSuchEndpoint", "this server has no API description"));
        return;
      }
      http::ServerResponse resp;
      resp.body = options.openapi_json;
      respond(std::move(resp));
      return;
    }
    if (!uses_engine(r.action)) {
      respond(perform(engine, r, req.body));  // answers without the engine: at once, on this thread
      return;
    }
    if (draining_now()) {
      respond(unavailable());
      return;
    }
    // Why a pool: engine calls block (a send waits for its commit); on the I/O thread they would
    // hold up every other connection served by it.
    boost::asio::post(pool, [this, r = std::move(r), body = std::move(req.body), respond] {
      {
        std::lock_guard lock(mu);
        if (draining) {
          respond(unavailable());
          return;
        }
        ++running;
      }
      http::ServerResponse resp = perform(engine, r, body);
      {
        std::lock_guard lock(mu);
        --running;
      }
      idle.notify_all();
      respond(std::move(resp));
    });
  }

  bool draining_now() {
    std::lock_guard lock(mu);
    return draining;
  }

  http::ServerResponse unavailable() const {
    auto resp = api_error(503, "EngineClosed", "the server is shutting down");
    resp.headers.emplace_back("Retry-After", std::to_string(options.retry_after.count()));
    return resp;
  }

  void drain() {
    std::unique_lock lock(mu);
    draining = true;
    idle.wait(lock, [this] { return running == 0; });
  }

  Engine& engine;
  const ApiServerOptions options;
  boost::asio::thread_pool pool;
  std::mutex mu;  ///< guards draining and running: a call counted in `running` started before drain
  std::condition_variable idle;
  bool draining = false;
  std::size_t running = 0;
  std::unique_ptr<http::Server> server;
  bool stopped = false;
};

ApiServer::ApiServer(Engine& engine, ApiServerOptions options) : impl_(std::make_unique<Impl>(engine, std::move(options))) {
  http::ServerOptions so = impl_->options.http;
  if (so.thread_name == "herald-http") so.thread_name = "herald-api-io";
  Impl* impl = impl_.get();
  try {
    impl_->server = std::make_unique<http::Server>(
        so, [impl](http::ServerRequest&& req, http::Respond respond) { impl->handle(std::move(req), respond); });
  } catch (...) {
    impl_->pool.join();
    throw;
  }
}

ApiServer::~ApiServer() { stop(); }

std::uint16_t ApiServer::port() const { return impl_->server->port(); }
std::string ApiServer::url() const { return impl_->server->url(); }

void ApiServer::drain() { impl_->drain(); }

void ApiServer::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->drain();
  impl_->pool.join();  // jobs still queued answer 503 (draining) before the server goes
  impl_->server->stop();
}

}  // namespace herald::api
