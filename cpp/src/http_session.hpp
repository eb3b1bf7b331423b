#pragma once
// One connection of http::Server (http_server.cpp), an h1::Session: it waits for a request, reads
// its head and body with Beast, hands it to the Handler, writes the answer the Handler's Respond
// is given, and repeats while keep-alive holds; plus what the server, its sessions and every
// outstanding Respond share (options, handler, the connection table). The server makes a Session
// per accepted socket, enters it in the table and starts it. Internal to the core.
#include "herald/http_server.hpp"

#include "connection_limits.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
// GCC's sanitizer builds report a false -Wmaybe-uninitialized inside Beast's parser (a
// boost::optional body limit); it is in Boost's code, so silence it for those headers only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#pragma GCC diagnostic pop

namespace herald::http::h1 {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

class Session;
using Clock = std::chrono::steady_clock;

/// What the server, its sessions and every outstanding Respond share. Outlives the Server when a
/// Respond is kept after stop(); `stopped` then turns the Respond into a no-op.
struct Shared {
  Handler handler;
  ServerOptions options;
  std::size_t max_connections = 0;  ///< options.max_connections after the open-file cap
  /// The shortest of the timeouts: a session's deadline timer wakes at least this often while it
  /// has a deadline, so moving to a later deadline never re-arms the timer (see Session::expect).
  Clock::duration tick{};
  /// Guards `stopped` and `table`. A Respond posts to a session's strand while holding it, so
  /// stop() (which sets `stopped` under it) never destroys the io_context under a post.
  std::mutex mu;
  bool stopped = false;
  /// Every open connection, owned here so one waiting for its Respond (no I/O pending) stays
  /// alive; the session removes itself when it ends, eviction and stop() remove the rest.
  detail::ConnectionTable<std::shared_ptr<Session>> table;
  detail::ConnectionCounters counters;
};

/// One connection: wait for a request (idle), read its head and body, hand it to the handler,
/// write its answer when Respond is called, repeat while keep-alive holds. All of it runs on the
/// socket's strand. One timer per connection enforces the timeouts of the phase it is in.
class Session : public std::enable_shared_from_this<Session> {
 public:
  using Handle = detail::ConnectionTable<std::shared_ptr<Session>>::Handle;

  Session(tcp::socket socket, std::shared_ptr<Shared> shared);

  void start() { read(); }

  /// Called on the strand with an answer from a Respond.
  void answer(ServerResponse response, bool keep_alive, unsigned version);

  /// Strand only: the server chose this idle connection to make room (it is out of the table).
  void evict() { close_socket(); }

  /// Only from stop(), with no io thread running.
  void close_now();

  [[nodiscard]] asio::any_io_executor executor() { return socket_.get_executor(); }

  // Guarded by shared_->mu: where this session sits in the table, if it still does.
  Handle handle_{};
  bool in_table_ = false;

 private:
  /// What the connection waits for; says which timeout applies and what its expiry means.
  enum class Phase : std::uint8_t {
    idle,      ///< the first byte of the next request (idle_timeout: close quietly)
    head,      ///< the rest of the request head (header_timeout: 408, close)
    body,      ///< the rest of the body (body_timeout: 408, close)
    handling,  ///< the handler's answer (no timeout: the handler owns that)
    writing,   ///< the answer to go out (write_timeout: close)
    closing,   ///< draining after our FIN (bounded by kDrainTime)
  };

  void read();
  void on_first_bytes(beast::error_code ec, std::size_t n);
  void read_head();
  void on_head(beast::error_code ec);
  void on_read_error(beast::error_code ec);
  void on_request();

  // --- timeouts ------------------------------------------------------------------------------

  /// Enters `phase` with `timeout` from now (zero: no deadline). Cheap on the per-request path:
  /// the timer is re-armed only when the new deadline comes before its pending expiry, which the
  /// tick (never longer than the shortest timeout) makes rare.
  void expect(Phase phase, std::chrono::milliseconds timeout);
  void arm(Clock::time_point at);
  void on_timer(beast::error_code ec, std::uint64_t generation);

  // --- bookkeeping ---------------------------------------------------------------------------

  /// Moves this connection to the table's idle or busy side. False when it is no longer in the
  /// table (evicted, or the server stopping): the connection must end.
  bool set_idle(bool idle);
  void close_socket();

  /// The once-only state behind one Respond (and its copies).
  struct Pending;

  Respond make_respond(bool keep_alive, unsigned version);
  void build(ServerResponse r, bool keep_alive, unsigned version);
  void write();
  void on_write(beast::error_code ec);

  /// After our FIN: swallow what the peer still sends until it closes or kDrainTime passes.
  void drain();

  /// The connection is done: close it and leave the server's table (pending handlers still hold
  /// `this`).
  void finish();

  /// Bytes asked for by the read that waits for a request, and by drain().
  static constexpr std::size_t kFirstRead = 4096;

  tcp::socket socket_;
  std::shared_ptr<Shared> shared_;
  std::string remote_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
  bool close_after_write_ = false;
  bool closed_ = false;     // the socket is closed: nothing more to read or write
  bool timed_out_ = false;  // the deadline cancelled a head or body read: answer 408
  Phase phase_ = Phase::idle;
  Clock::time_point deadline_ = Clock::time_point::max();  // of the current phase
  asio::steady_timer deadline_timer_;
  bool timer_pending_ = false;  // a wait on deadline_timer_ is outstanding, expiring at timer_expiry_
  Clock::time_point timer_expiry_{};
  std::uint64_t timer_generation_ = 0;
  std::optional<asio::steady_timer> timer_;        // made on the first delayed answer, reused after
  std::optional<asio::steady_timer> drain_timer_;  // bounds drain()
};

}  // namespace herald::http::h1
