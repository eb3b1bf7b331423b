#pragma once
// One connection of http::H2cServer (h2c_server.cpp): an nghttp2 server session fed from one
// Boost.Asio socket, the streams open on it, and what the server shares with its connections
// (options, handler, the connection table). The server makes a Connection per accepted socket,
// enters it in the table and starts it; the connection does the rest. Internal to the core.
//
// nghttp2 sessions are not thread-safe, so every call on a session (and every touch of the
// connection's stream table) runs on that connection's strand. Bytes read go in through
// nghttp2_session_mem_recv; bytes to write come out of nghttp2_session_mem_send, with at most
// one async_write in flight per connection. A Respond may run on any thread: it posts to the
// strand, which submits the answer and flushes.
#include "herald/http_server.hpp"

#include "connection_limits.hpp"

#include <nghttp2/nghttp2.h>

#include <boost/asio.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace herald::http::h2c {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Strand = asio::strand<asio::io_context::executor_type>;

/// Bytes read per async_read_some.
constexpr std::size_t kReadBufferBytes = 64 * 1024;

struct SessionDeleter {
  void operator()(nghttp2_session* session) const noexcept { nghttp2_session_del(session); }
};
struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* callbacks) const noexcept {
    nghttp2_session_callbacks_del(callbacks);
  }
};
using SessionPtr = std::unique_ptr<nghttp2_session, SessionDeleter>;
using CallbacksPtr = std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter>;

class Connection;

/// What the server shares with its connections.
struct Shared {
  ServerOptions options;
  Handler handler;
  std::size_t max_connections = 0;  ///< options.max_connections after the open-file cap
  std::mutex mutex;  ///< guards table, stopped and each connection's handle_/in_table_
  /// Open connections; idle = no stream open. Weak: a connection lives by its pending I/O.
  detail::ConnectionTable<std::weak_ptr<Connection>> table;
  bool stopped = false;
  detail::ConnectionCounters counters;
};

/// One request/response exchange on one stream. Strand only.
struct Stream {
  ServerRequest request;
  bool dispatched = false;  ///< handed to the Handler (or answered by the server itself)
  bool responded = false;   ///< an answer was accepted; later ones are dropped
  std::string body_out;     ///< response body, read by the data provider
  std::size_t body_offset = 0;
  std::unique_ptr<asio::steady_timer> delay;  ///< cancelled with the stream
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Handle = detail::ConnectionTable<std::weak_ptr<Connection>>::Handle;

  Connection(tcp::socket socket, Strand strand, std::shared_ptr<Shared> shared);

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Strand only: sets up the session, sends SETTINGS, starts reading.
  void start();

  /// Strand only. Idempotent: drops every stream (cancelling delay timers) and the socket.
  void close();

  // Guarded by shared_->mutex: where this connection sits in the table, if it still does.
  Handle handle_{};
  bool in_table_ = false;

  /// Any thread: hands one answer to the strand.
  void post_response(std::int32_t stream_id, ServerResponse response);

  [[nodiscard]] const Strand& strand() const { return strand_; }

 private:
  // --- idleness ---------------------------------------------------------------------------

  /// Strand only. Moves this connection to the table's idle or busy side; false when it is no
  /// longer there (evicted, or the server stopping) and must end.
  bool set_idle(bool idle);

  /// Strand only. Closes the connection once idle_timeout passes with no stream open: first a
  /// GOAWAY (the peer learns not to reuse it), then, if it is still open idle_timeout later, the
  /// socket.
  void arm_idle_timer();

  bool make_session();

  // --- I/O ---------------------------------------------------------------------------------

  void read();
  void on_read(const boost::system::error_code& ec, std::size_t bytes);

  /// Strand only. Writes whatever nghttp2 has queued, one write at a time.
  void flush();

  // --- answers -----------------------------------------------------------------------------

  void on_response(std::int32_t stream_id, ServerResponse&& response);
  void submit(std::int32_t stream_id, Stream& stream, ServerResponse&& response);
  static ssize_t read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length,
                           std::uint32_t* data_flags, nghttp2_data_source* source,
                           void*) noexcept;

  // --- requests ----------------------------------------------------------------------------

  Stream* find(std::int32_t stream_id);
  void dispatch(std::int32_t stream_id, Stream& stream);
  void reject_too_large(std::int32_t stream_id, Stream& stream);

  // --- nghttp2 callbacks: they run inside mem_recv on the strand and must not throw ---------

  static Connection& self(void* user_data);
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame,
                              void* user_data) noexcept;
  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t, void* user_data) noexcept;
  static int on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void* user_data) noexcept;
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) noexcept;
  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t,
                             void* user_data) noexcept;

  tcp::socket socket_;
  Strand strand_;
  std::shared_ptr<Shared> shared_;
  SessionPtr session_;
  std::string remote_;
  std::unordered_map<std::int32_t, std::unique_ptr<Stream>> streams_;
  std::array<std::uint8_t, kReadBufferBytes> read_buffer_{};
  std::string write_buffer_;  ///< the bytes of the one write in flight
  bool writing_ = false;
  bool closed_ = false;
  asio::steady_timer idle_timer_;        ///< idle_timeout with no stream open
  std::uint64_t idle_generation_ = 0;    ///< bumped to supersede a pending idle wait
  bool goaway_sent_ = false;             ///< the idle timeout has begun closing
};

}  // namespace herald::http::h2c
