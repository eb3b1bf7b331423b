// herald::http::Server: a generic HTTP/1.1 server (Boost.Beast) that hands every request to a
// Handler and writes whatever the Handler's Respond callable is later given.
//
// Each connection is an h1::Session (http_session.hpp/.cpp: reading, the Handler, writing, the
// timeouts). This file listens, accepts, admits each connection under max_connections (closing
// the oldest idle one when full), and stops them all; it also holds error_response() and
// ServerRequest::header(), which both servers' callers use.
#include "herald/http_server.hpp"

#include "connection_limits.hpp"
#include "herald/json_text.hpp"
#include "herald/thread_name.hpp"
#include "http_session.hpp"

#include <algorithm>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/error.hpp>

namespace herald::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

ServerResponse error_response(unsigned status, std::string_view code, std::string_view message) {
  ServerResponse r;
  r.status = status;
  r.body = R"({"error":{"code":)";
  herald::detail::append_json_string(r.body, code);
  if (!message.empty()) {
    r.body += R"(,"message":)";
    herald::detail::append_json_string(r.body, message);
  }
  r.body += "}}";
  return r;
}

std::string ServerRequest::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return value;
  }
  return {};
}

namespace {

tcp::endpoint resolve_endpoint(const std::string& host, std::uint16_t port) {
  beast::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (!ec) return {addr, port};
  asio::io_context ctx;
  tcp::resolver resolver(ctx);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    throw std::runtime_error("http server: cannot resolve " + host + ":" + std::to_string(port) + ": " +
                             ec.message());
  }
  return results.begin()->endpoint();
}

using h1::Session;
using h1::Shared;

}  // namespace

struct Server::Impl {
  Impl(ServerOptions opts, Handler handler)
      : options_(std::move(opts)),
        shared_(std::make_shared<Shared>()),
        ioc_(std::make_unique<asio::io_context>(static_cast<int>(std::max(1u, options_.threads)))) {
    if (options_.threads == 0) options_.threads = 1;
    if (options_.thread_name.size() > 15) options_.thread_name.resize(15);  // Linux's limit
    for (auto* t : {&options_.header_timeout, &options_.body_timeout, &options_.idle_timeout, &options_.write_timeout}) {
      if (t->count() <= 0) *t = std::chrono::milliseconds{1};
    }
    shared_->handler = std::move(handler);
    shared_->options = options_;
    shared_->max_connections = detail::cap_connections(options_.max_connections);
    shared_->tick = std::min({options_.header_timeout, options_.body_timeout, options_.idle_timeout,
                              options_.write_timeout});

    const tcp::endpoint endpoint = resolve_endpoint(options_.host, options_.port);
    acceptor_.emplace(*ioc_);
    beast::error_code ec;
    const auto fail = [&](const char* what) {
      throw std::runtime_error("http server: cannot " + std::string(what) + " " + options_.host + ":" +
                               std::to_string(options_.port) + ": " + ec.message());
    };
    if (acceptor_->open(endpoint.protocol(), ec); ec) fail("open");
    if (acceptor_->set_option(asio::socket_base::reuse_address(true), ec); ec) fail("configure");
    if (acceptor_->bind(endpoint, ec); ec) fail("bind");
    if (acceptor_->listen(asio::socket_base::max_listen_connections, ec); ec) fail("listen");
    port_ = acceptor_->local_endpoint().port();
    const bool v6 = endpoint.address().is_v6();
    url_ = "http://" + (v6 ? "[" + options_.host + "]" : options_.host) + ":" + std::to_string(port_);
    accept_retry_.emplace(*ioc_);

    accept();
    threads_.reserve(options_.threads);
    for (unsigned i = 0; i < options_.threads; ++i) {
      threads_.emplace_back([ctx = ioc_.get(), name = options_.thread_name] {
        herald::detail::name_this_thread(name.c_str());
        ctx->run();
      });
    }
  }

  ~Impl() { stop(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  /// Only one accept is outstanding at a time, so its handler (and accept_retry_) never runs
  /// concurrently with itself.
  void accept() {
    // Each connection's socket lives on its own strand, so its handlers (and the answers posted
    // to it from other threads) never run concurrently.
    acceptor_->async_accept(asio::make_strand(*ioc_), [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) return on_accept_error(ec);
      admit(std::move(socket));
      accept();
    });
  }

  /// Out of descriptors and the like: free one (the oldest idle connection) if a connection is
  /// waiting, and retry after a short pause rather than spin on an accept that fails at once.
  void on_accept_error(beast::error_code ec) {
    auto& counters = shared_->counters;
    detail::ConnectionCounters::bump(counters.accept_errors);
    if (detail::out_of_descriptors(ec) && detail::connection_waiting(acceptor_->native_handle())) {
      std::optional<std::shared_ptr<Session>> victim;
      {
        std::lock_guard lock(shared_->mu);
        victim = shared_->table.evict_oldest_idle();
        if (victim) (*victim)->in_table_ = false;
      }
      if (victim) evict(std::move(*victim));
    }
    accept_retry_->expires_after(std::chrono::milliseconds(10));
    accept_retry_->async_wait([this](beast::error_code timer_ec) {
      if (!timer_ec) accept();
    });
  }

  /// Takes the new connection into the table (closing the oldest idle one if the table is full),
  /// or closes it when the table is full of busy ones.
  void admit(tcp::socket socket) {
    beast::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto session = std::make_shared<Session>(std::move(socket), shared_);
    auto& counters = shared_->counters;
    detail::ConnectionTable<std::shared_ptr<Session>>::Admission admission;
    {
      // Why the lock: sessions move between idle and busy from their own strands.
      std::lock_guard lock(shared_->mu);
      if (shared_->stopped) return;
      admission = shared_->table.admit(shared_->max_connections);
      if (admission.evicted) (*admission.evicted)->in_table_ = false;
      if (admission.accept) {
        session->handle_ = shared_->table.add(session);
        session->in_table_ = true;
      }
    }
    if (admission.evicted) evict(std::move(*admission.evicted));
    if (!admission.accept) {
      detail::ConnectionCounters::bump(counters.refused);
      return;  // the socket closes with `session`, which nothing else holds
    }
    detail::ConnectionCounters::bump(counters.accepted);
    // start() touches the socket: do it on the session's strand.
    asio::post(session->executor(), [session] { session->start(); });
  }

  void evict(std::shared_ptr<Session> victim) {
    detail::ConnectionCounters::bump(shared_->counters.closed_evicted);
    asio::post(victim->executor(), [victim] { victim->evict(); });
  }

  [[nodiscard]] ServerStats stats() const {
    std::lock_guard lock(shared_->mu);
    return shared_->counters.snapshot(shared_->table.size(), shared_->table.idle_count(), shared_->max_connections);
  }

  void stop() {
    // Serialises concurrent stop() calls; the second one finds nothing left to do.
    std::lock_guard stop_lock(stop_mu_);
    if (!ioc_) return;
    std::vector<std::shared_ptr<Session>> sessions;
    {
      // From here on every Respond is a no-op, so nothing posts to the io_context we destroy.
      std::lock_guard lock(shared_->mu);
      shared_->stopped = true;
      sessions = shared_->table.take_all();
      for (auto& s : sessions) s->in_table_ = false;
    }
    ioc_->stop();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
    // No io thread runs now, so the sockets can be touched from here.
    beast::error_code ignored;
    acceptor_->close(ignored);
    for (auto& session : sessions) session->close_now();
    sessions.clear();
    // The acceptor before the io_context it belongs to; destroying the io_context then destroys
    // every pending handler, and with them the last references to the sessions.
    accept_retry_.reset();
    acceptor_.reset();
    ioc_.reset();
  }

  ServerOptions options_;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<asio::io_context> ioc_;
  std::optional<tcp::acceptor> acceptor_;
  std::optional<asio::steady_timer> accept_retry_;  ///< paces accept() after a failure
  std::vector<std::thread> threads_;
  std::uint16_t port_ = 0;
  std::string url_;
  std::mutex stop_mu_;
};

Server::Server(ServerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

Server::~Server() {
  if (impl_) impl_->stop();
}

std::uint16_t Server::port() const { return impl_->port_; }
std::string Server::url() const { return impl_->url_; }
ServerStats Server::stats() const { return impl_->stats(); }
void Server::stop() { impl_->stop(); }

}  // namespace herald::http
