// HTTP/2 cleartext server with prior knowledge (h2c): nghttp2's session state machine fed from
// Boost.Asio sockets.
//
// One nghttp2 session per connection, each an h2c::Connection (h2c_connection.hpp/.cpp: the
// session, its streams, reading and writing on the connection's strand). This file listens,
// accepts, admits each connection under max_connections (closing the oldest idle one when
// full), and stops them all.
#include "herald/http_server.hpp"

#include "connection_limits.hpp"
#include "h2c_connection.hpp"
#include "herald/thread_name.hpp"

#include <boost/asio.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace herald::http {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using h2c::Connection;
using h2c::Shared;
using h2c::Strand;

}  // namespace

// ---------------------------------------------------------------------------------------------

struct H2cServer::Impl {
  Impl(ServerOptions options, Handler handler)
      : shared_(std::make_shared<Shared>()), acceptor_(io_), acceptor_strand_(io_.get_executor()) {
    shared_->options = std::move(options);
    shared_->handler = std::move(handler);
    if (shared_->options.idle_timeout.count() <= 0) shared_->options.idle_timeout = std::chrono::milliseconds{1};
    shared_->max_connections = detail::cap_connections(shared_->options.max_connections);
    const ServerOptions& opts = shared_->options;
    const std::string where = opts.host + ":" + std::to_string(opts.port);

    boost::system::error_code ec;
    tcp::resolver resolver(io_);
    const auto results = resolver.resolve(opts.host, std::to_string(opts.port),
                                          tcp::resolver::passive | tcp::resolver::numeric_service,
                                          ec);
    if (ec || results.empty()) {
      throw std::runtime_error("h2c server: cannot resolve " + where + ": " + ec.message());
    }
    const tcp::endpoint endpoint = results.begin()->endpoint();
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error("h2c server: cannot listen on " + where + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    host_ = opts.host;

    accept();  // before the threads: run() must find work, or it returns at once
    const unsigned count = std::max(1U, opts.threads);
    threads_.reserve(count);
    for (unsigned i = 0; i < count; ++i) {
      threads_.emplace_back([this] {
        herald::detail::name_this_thread(shared_->options.thread_name.substr(0, 15).c_str());
        io_.run();
      });
    }
  }

  ~Impl() { stop(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void stop() {
    {
      // Why the lock: connections register themselves under it from server threads.
      std::lock_guard lock(shared_->mutex);
      if (shared_->stopped) return;
      shared_->stopped = true;
    }
    asio::post(acceptor_strand_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
      accept_retry_.cancel();
      std::vector<std::shared_ptr<Connection>> open;
      {
        std::lock_guard lock(shared_->mutex);
        for (auto& weak : shared_->table.take_all()) {
          if (auto conn = weak.lock()) {
            conn->in_table_ = false;
            open.push_back(std::move(conn));
          }
        }
      }
      for (auto& conn : open) {
        asio::post(conn->strand(), [conn] { conn->close(); });
      }
    });
    // With the acceptor and every socket closed, and delay timers gone with their streams, the
    // io_context runs out of work and each thread's run() returns.
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

  void accept() {
    // Each connection gets its own strand; the acceptor's handlers run on acceptor_strand_.
    auto strand = asio::make_strand(io_);
    acceptor_.async_accept(
        strand, asio::bind_executor(acceptor_strand_, [this, strand](
                                                          const boost::system::error_code& ec,
                                                          tcp::socket socket) {
          if (!acceptor_.is_open()) return;
          if (ec) return on_accept_error(ec);
          start_connection(std::move(socket), strand);
          accept();
        }));
  }

  /// acceptor_strand_ only. Out of descriptors and the like: free one (the oldest idle
  /// connection) if a connection is waiting, and retry after a short pause rather than spin on an accept that fails at once.
  void on_accept_error(const boost::system::error_code& ec) {
    detail::ConnectionCounters::bump(shared_->counters.accept_errors);
    if (detail::out_of_descriptors(ec) && detail::connection_waiting(acceptor_.native_handle())) {
      std::shared_ptr<Connection> victim;
      {
        std::lock_guard lock(shared_->mutex);
        victim = detach(shared_->table.evict_oldest_idle());
      }
      evict(std::move(victim));
    }
    accept_retry_.expires_after(std::chrono::milliseconds(10));
    accept_retry_.async_wait(asio::bind_executor(acceptor_strand_, [this](const boost::system::error_code& timer_ec) {
      if (!timer_ec && acceptor_.is_open()) accept();
    }));
  }

  /// Takes the connection into the table (closing the oldest idle one when full), or closes it
  /// when every connection held is busy.
  void start_connection(tcp::socket socket, const Strand& strand) {
    auto conn = std::make_shared<Connection>(std::move(socket), strand, shared_);
    detail::ConnectionTable<std::weak_ptr<Connection>>::Admission admission;
    std::shared_ptr<Connection> victim;
    {
      // Why the lock: stop() and the connections use the table from their own threads.
      std::lock_guard lock(shared_->mutex);
      if (shared_->stopped) return;  // the socket closes with conn
      admission = shared_->table.admit(shared_->max_connections);
      victim = detach(std::move(admission.evicted));
      if (admission.accept) {
        conn->handle_ = shared_->table.add(conn);
        conn->in_table_ = true;
      }
    }
    evict(std::move(victim));
    if (!admission.accept) {
      detail::ConnectionCounters::bump(shared_->counters.refused);
      return;  // the socket closes with conn
    }
    detail::ConnectionCounters::bump(shared_->counters.accepted);
    asio::post(strand, [conn] { conn->start(); });
  }

  /// Under shared_->mutex, with the entry the table just gave up: marks the connection as out
  /// of the table (so its close() does not remove it twice) and hands it back, if it still lives.
  static std::shared_ptr<Connection> detach(std::optional<std::weak_ptr<Connection>> removed) {
    if (!removed) return nullptr;
    auto conn = removed->lock();
    if (conn) conn->in_table_ = false;
    return conn;
  }

  /// Closes a connection the table gave up to make room, on its strand.
  void evict(std::shared_ptr<Connection> victim) {
    if (!victim) return;
    detail::ConnectionCounters::bump(shared_->counters.closed_evicted);
    asio::post(victim->strand(), [victim] { victim->close(); });
  }

  [[nodiscard]] ServerStats stats() const {
    std::lock_guard lock(shared_->mutex);
    return shared_->counters.snapshot(shared_->table.size(), shared_->table.idle_count(), shared_->max_connections);
  }

  std::shared_ptr<Shared> shared_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  asio::strand<asio::io_context::executor_type> acceptor_strand_;
  asio::steady_timer accept_retry_{io_};  ///< paces accept() after a failure; acceptor_strand_ only
  std::uint16_t port_ = 0;
  std::string host_;
  std::vector<std::thread> threads_;  ///< last: joined before the members above go
};

H2cServer::H2cServer(ServerOptions options, Handler handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler))) {}

H2cServer::~H2cServer() = default;

std::uint16_t H2cServer::port() const { return impl_->port_; }

std::string H2cServer::url() const {
  const std::string& host = impl_->host_;
  const bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(impl_->port_);
}

ServerStats H2cServer::stats() const { return impl_->stats(); }
void H2cServer::stop() { impl_->stop(); }

}  // namespace herald::http
