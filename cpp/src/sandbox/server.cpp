// The sandbox's routing table and transport: one handler (route) served by herald::http::Server
// (HTTP/1.1) and, when asked, by herald::http::H2cServer (HTTP/2 cleartext) over the same state.
#include "herald/sandbox.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "herald/http_server.hpp"
#include "routes.hpp"
#include "state.hpp"

namespace herald::sandbox {

namespace detail {

ServerResponse route(State& state, const ServerRequest& req) {
  const std::string_view path = req.path;
  constexpr std::string_view kFcmSuffix = "/messages:send";
  if (starts_with(path, "/v1/projects/") && path.size() > 13 + kFcmSuffix.size() &&
      path.substr(path.size() - kFcmSuffix.size()) == kFcmSuffix) {
    return handle_fcm_send(state, req);
  }
  if (starts_with(path, "/v1/") || starts_with(path, "/hooks/")) return handle_herald(state, req);
  if (starts_with(path, "/2010-04-01/Accounts/")) return handle_twilio(state, req);
  if (path == "/v3/mail/send") return handle_sendgrid(state, req);
  if (path == "/token") return handle_fcm_token(state, req);
  if (starts_with(path, "/3/device/") && path.size() > 10) return handle_apns(state, req);
  if (starts_with(path, "/services/")) return handle_slack(state, req);
  return handle_control(state, req);
}

}  // namespace detail

namespace {

constexpr std::size_t kBodyLimit = 16u * 1024 * 1024;  // per request

/// The handler both transports call. Holds the state by shared_ptr: an answer written late
/// (after a latency fault) never outlives what it reads.
http::Handler make_handler(std::shared_ptr<detail::State> state) {
  return [state = std::move(state)](http::ServerRequest&& req, const http::Respond& respond) {
    try {
      if (detail::handle_long_poll(state, req, respond)) return;  // answers later
    } catch (const std::exception& e) {
      respond(detail::herald_error(500, "internal", e.what()));
      return;
    }
    http::ServerResponse res;
    try {
      res = detail::route(*state, req);
    } catch (const std::exception& e) {
      res = detail::herald_error(500, "internal", e.what());
    }
    respond(std::move(res));
  };
}

}  // namespace

// ---- Server -----------------------------------------------------------------------------------

struct Server::Impl {
  explicit Impl(Options opts)
      : options_(std::move(opts)), state_(std::make_shared<detail::State>(options_.seed, options_.signing_secret)) {
    if (options_.h2c_port < -1 || options_.h2c_port > 65535) {
      throw std::runtime_error("sandbox: h2c_port must be -1 (off) or 0..65535");
    }
    http::ServerOptions o;
    o.host = options_.host;
    o.port = options_.port;
    o.threads = options_.threads == 0 ? 1 : options_.threads;
    o.max_body_bytes = kBodyLimit;
    o.thread_name = "herald-sandbox";
    try {
      http1_ = std::make_unique<http::Server>(o, make_handler(state_));
      if (options_.h2c_port >= 0) {
        o.port = static_cast<std::uint16_t>(options_.h2c_port);
        o.thread_name = "herald-sbx-h2c";
        h2c_ = std::make_unique<http::H2cServer>(o, make_handler(state_));
      }
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(std::string("sandbox: ") + e.what());
    }
  }

  ~Impl() { stop(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void stop() {
    // Serialises concurrent stop() calls; the second one finds nothing left to do.
    std::lock_guard lock(stop_mu_);
    if (h2c_) h2c_->stop();
    if (http1_) http1_->stop();
    // Callbacks last: nothing can schedule new ones once the transports are gone.
    state_->shutdown();
  }

  Options options_;
  std::shared_ptr<detail::State> state_;
  std::unique_ptr<http::Server> http1_;
  std::unique_ptr<http::H2cServer> h2c_;
  std::mutex stop_mu_;
};

Server::Server(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() {
  if (impl_) impl_->stop();
}

std::uint16_t Server::port() const { return impl_->http1_->port(); }
std::string Server::url() const { return impl_->http1_->url(); }

std::uint16_t Server::h2c_port() const { return impl_->h2c_ ? impl_->h2c_->port() : 0; }
std::string Server::h2c_url() const { return impl_->h2c_ ? impl_->h2c_->url() : std::string{}; }

nlohmann::json Server::keys() const {
  return {{"sendgrid_verification_key", impl_->state_->sendgrid_public_key()},
          {"signing_secret", impl_->state_->signing_secret()}};
}

void Server::set_callbacks(const std::string& service, const Callbacks& callbacks) {
  detail::CallbackSettings s;
  s.enabled = callbacks.enabled;
  s.delay = callbacks.delay;
  s.url = callbacks.url;
  impl_->state_->set_callbacks(service, s);
}

void Server::set_faults(const std::string& provider, const Faults& faults) { impl_->state_->set_faults(provider, faults); }
void Server::clear_faults() { impl_->state_->clear_faults(); }
nlohmann::json Server::messages(const std::string& provider) const { return impl_->state_->messages(provider); }
nlohmann::json Server::stats() const { return impl_->state_->stats(); }
void Server::clear() { impl_->state_->clear(); }
void Server::stop() { impl_->stop(); }

}  // namespace herald::sandbox
