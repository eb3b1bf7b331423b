// The sandbox's transport and routing table: a Beast HTTP/1.1 listener whose sessions turn each
// request into a ServerRequest, route it to a service handler and write the ServerResponse back.
#include "herald/sandbox.hpp"

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http.hpp>

#include "herald/thread_name.hpp"
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

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using detail::State;

namespace {

constexpr std::uint64_t kBodyLimit = 16ull * 1024 * 1024;  // per request

// Boost 1.74 Beast speaks boost::string_view; the rest of this file speaks std::string_view.
std::string_view to_std(beast::string_view s) noexcept { return {s.data(), s.size()}; }
beast::string_view to_beast(std::string_view s) noexcept { return {s.data(), s.size()}; }

using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;

/// The transport-independent view of a Beast request (the body is moved out).
http::ServerRequest to_server_request(Request& req, const std::string& remote) {
  http::ServerRequest out;
  out.method = std::string(to_std(req.method_string()));
  out.target = std::string(to_std(req.target()));
  const auto qmark = out.target.find('?');
  out.path = out.target.substr(0, qmark);
  if (qmark != std::string::npos) out.query = out.target.substr(qmark + 1);
  out.headers.reserve(8);
  for (const auto& field : req) {
    std::string name(to_std(field.name_string()));
    for (char& c : name) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    out.headers.emplace_back(std::move(name), std::string(to_std(field.value())));
  }
  out.body = std::move(req.body());
  out.remote = remote;
  return out;
}

/// Fills a Beast response from a ServerResponse; returns the delay to wait before writing.
std::chrono::milliseconds to_beast_response(http::ServerResponse&& in, Response& res) {
  res.result(in.status);
  const bool bodyless = in.status < 200 || in.status == 204 || in.status == 304;
  if (!in.content_type.empty() && !bodyless) res.set(bhttp::field::content_type, to_beast(in.content_type));
  for (const auto& [name, value] : in.headers) res.set(to_beast(name), to_beast(value));
  if (!bodyless) res.body() = std::move(in.body);
  return in.delay;
}

/// One connection: read a request, answer it (after the latency fault, on a timer), repeat while
/// keep-alive holds. Every pending operation holds a shared_ptr to the session, so a timer or read
/// that completes (or is destroyed with the io_context) never touches a freed session.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<State> state) : socket_(std::move(socket)), state_(std::move(state)) {
    beast::error_code ec;
    const auto peer = socket_.remote_endpoint(ec);
    if (!ec) remote_ = peer.address().to_string() + ":" + std::to_string(peer.port());
  }

  void start() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(kBodyLimit);
    bhttp::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream) {
      beast::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    if (ec) {
      if (ec == asio::error::operation_aborted || ec == asio::error::connection_reset || ec == asio::error::eof) return;
      // A malformed or oversized request: answer once and hang up.
      res_ = {};
      res_.version(11);
      const bool too_big = ec == bhttp::error::body_limit || ec == bhttp::error::header_limit;
      (void)to_beast_response(detail::herald_error(too_big ? 413 : 400, too_big ? "too_large" : "bad_request", ec.message()),
                              res_);
      res_.keep_alive(false);
      res_.prepare_payload();
      write(true);
      return;
    }
    Request& req = parser_->get();
    const bool keep_alive = req.keep_alive();
    res_ = {};
    res_.version(req.version());
    std::chrono::milliseconds latency{0};
    try {
      latency = to_beast_response(detail::route(*state_, to_server_request(req, remote_)), res_);
    } catch (const std::exception& e) {
      res_ = {};
      res_.version(req.version());
      (void)to_beast_response(detail::herald_error(500, "internal", e.what()), res_);
    }
    res_.keep_alive(keep_alive);
    res_.prepare_payload();
    if (latency.count() > 0) {
      if (!timer_) timer_.emplace(socket_.get_executor());
      timer_->expires_after(latency);
      timer_->async_wait([self = shared_from_this(), keep_alive](beast::error_code timer_ec) {
        if (!timer_ec) self->write(!keep_alive);
      });
      return;
    }
    write(!keep_alive);
  }

  void write(bool close) {
    bhttp::async_write(socket_, res_, [self = shared_from_this(), close](beast::error_code ec, std::size_t) {
      self->on_write(ec, close);
    });
  }

  void on_write(beast::error_code ec, bool close) {
    if (ec) return;
    if (close) {
      beast::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    read();
  }

  tcp::socket socket_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Response res_;
  std::optional<asio::steady_timer> timer_;  // made on the first delayed answer, reused after
  std::shared_ptr<State> state_;
  std::string remote_;
};

tcp::endpoint resolve_endpoint(const std::string& host, std::uint16_t port) {
  beast::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (!ec) return {addr, port};
  asio::io_context ctx;
  tcp::resolver resolver(ctx);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    throw std::runtime_error("sandbox: cannot resolve host '" + host + "': " + ec.message());
  }
  return results.begin()->endpoint();
}

}  // namespace

// ---- Server -----------------------------------------------------------------------------------

struct Server::Impl {
  explicit Impl(Options opts)
      : options_(std::move(opts)),
        state_(std::make_shared<State>(options_.seed, options_.signing_secret)),
        ioc_(std::make_unique<asio::io_context>(static_cast<int>(std::max(1u, options_.threads)))) {
    if (options_.threads == 0) options_.threads = 1;
    if (options_.h2c_port > 65535) throw std::runtime_error("sandbox: h2c_port must be -1..65535");
    const tcp::endpoint endpoint = resolve_endpoint(options_.host, options_.port);
    acceptor_.emplace(*ioc_);
    beast::error_code ec;
    const auto fail = [&](const char* what) {
      throw std::runtime_error("sandbox: cannot " + std::string(what) + " " + options_.host + ":" +
                               std::to_string(options_.port) + ": " + ec.message());
    };
    if (acceptor_->open(endpoint.protocol(), ec); ec) fail("open");
    if (acceptor_->set_option(asio::socket_base::reuse_address(true), ec); ec) fail("configure");
    if (acceptor_->bind(endpoint, ec); ec) fail("bind");
    if (acceptor_->listen(asio::socket_base::max_listen_connections, ec); ec) fail("listen");
    port_ = acceptor_->local_endpoint().port();
    const bool v6 = endpoint.address().is_v6();
    url_ = "http://" + (v6 ? "[" + options_.host + "]" : options_.host) + ":" + std::to_string(port_);

    if (options_.h2c_port >= 0) {
      http::ServerOptions h2;
      h2.host = options_.host;
      h2.port = static_cast<std::uint16_t>(options_.h2c_port);
      h2.threads = options_.threads;
      h2.max_body_bytes = kBodyLimit;
      h2.thread_name = "herald-sbx-h2c";
      // The handler holds the state by shared_ptr: a stream answered late never sees it freed.
      h2c_ = std::make_unique<http::H2cServer>(h2, [state = state_](http::ServerRequest&& req, http::Respond respond) {
        http::ServerResponse res;
        try {
          res = detail::route(*state, req);
        } catch (const std::exception& e) {
          res = detail::herald_error(500, "internal", e.what());
        }
        respond(std::move(res));
      });
      h2c_port_ = h2c_->port();
      h2c_url_ = h2c_->url();
    }

    accept();
    threads_.reserve(options_.threads);
    for (unsigned i = 0; i < options_.threads; ++i) {
      threads_.emplace_back([ctx = ioc_.get()] {
        herald::detail::name_this_thread("herald-sandbox");
        ctx->run();
      });
    }
  }

  ~Impl() { stop(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void accept() {
    // With one thread the io_context is an implicit strand; with more, each connection gets a
    // strand so its handlers never run concurrently.
    auto executor = options_.threads > 1 ? asio::any_io_executor(asio::make_strand(*ioc_))
                                         : asio::any_io_executor(ioc_->get_executor());
    acceptor_->async_accept(executor, [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        // Out of descriptors and the like: back off briefly rather than spin.
        auto timer = std::make_shared<asio::steady_timer>(*ioc_, std::chrono::milliseconds(10));
        timer->async_wait([this, timer](beast::error_code timer_ec) {
          if (!timer_ec) accept();
        });
        return;
      }
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(std::move(socket), state_)->start();
      accept();
    });
  }

  void stop() {
    // Serialises concurrent stop() calls; the second one finds nothing left to do.
    std::lock_guard lock(stop_mu_);
    if (h2c_) h2c_->stop();
    if (!ioc_) return;
    ioc_->stop();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
    // The acceptor before the io_context it belongs to; destroying the io_context then destroys
    // every pending handler, and with them the sessions and their sockets.
    acceptor_.reset();
    ioc_.reset();
    // Callbacks last: nothing can schedule new ones once the transport is gone.
    state_->shutdown();
  }

  Options options_;
  std::shared_ptr<State> state_;
  std::unique_ptr<asio::io_context> ioc_;
  std::optional<tcp::acceptor> acceptor_;
  std::vector<std::thread> threads_;
  std::uint16_t port_ = 0;
  std::string url_;
  std::unique_ptr<http::H2cServer> h2c_;
  std::uint16_t h2c_port_ = 0;
  std::string h2c_url_;
  std::mutex stop_mu_;
};

Server::Server(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() {
  if (impl_) impl_->stop();
}

std::uint16_t Server::port() const { return impl_->port_; }
std::string Server::url() const { return impl_->url_; }

std::uint16_t Server::h2c_port() const { return impl_->h2c_port_; }
std::string Server::h2c_url() const { return impl_->h2c_url_; }

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
