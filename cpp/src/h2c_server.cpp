// HTTP/2 cleartext server with prior knowledge (h2c): nghttp2's session state machine fed from
// Boost.Asio sockets.
//
// One nghttp2 session per connection. nghttp2 sessions are not thread-safe, so every call on a
// session (and every touch of the connection's stream table) runs on that connection's strand.
// Bytes read go in through nghttp2_session_mem_recv; bytes to write come out of
// nghttp2_session_mem_send, with at most one async_write in flight per connection. A Respond
// may run on any thread: it posts to the strand, which submits the answer and flushes.
#include "herald/http_server.hpp"

#include "connection_limits.hpp"
#include "herald/thread_name.hpp"

#include <nghttp2/nghttp2.h>

#include <boost/asio.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace herald::http {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Strand = asio::strand<asio::io_context::executor_type>;

/// Streams a client may open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
constexpr std::uint32_t kMaxConcurrentStreams = 1000;
/// Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE): a 1 MiB body needs no round trip.
constexpr std::uint32_t kStreamWindow = 1U << 20;
/// Connection-level receive window, raised from 64 KiB so many streams can upload at once.
constexpr std::int32_t kConnectionWindow = 16 << 20;
/// Bytes read per async_read_some.
constexpr std::size_t kReadBufferBytes = 64 * 1024;
/// Output gathered from nghttp2_session_mem_send before one write is started.
constexpr std::size_t kMaxWriteBatch = 1 << 20;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

/// Header names HTTP/2 forbids in a message (RFC 9113 8.2.2) or that we write ourselves.
bool skipped_response_header(std::string_view lower_name) {
  constexpr std::array<std::string_view, 8> kSkipped = {
      "connection", "keep-alive", "proxy-connection", "transfer-encoding",
      "upgrade",    "te",         "content-length",   "host"};
  return lower_name.empty() || lower_name.front() == ':' ||
         std::find(kSkipped.begin(), kSkipped.end(), lower_name) != kSkipped.end();
}

nghttp2_nv make_nv(const std::string& name, const std::string& value) {
  nghttp2_nv nv;
  // nghttp2 copies names and values on submit (no NO_COPY flags), so these may be temporaries'.
  nv.name = reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data()));
  nv.value = reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data()));
  nv.namelen = name.size();
  nv.valuelen = value.size();
  nv.flags = NGHTTP2_NV_FLAG_NONE;
  return nv;
}

std::string endpoint_text(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  std::string host = address.to_string();
  if (address.is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(endpoint.port());
}

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

  Connection(tcp::socket socket, Strand strand, std::shared_ptr<Shared> shared)
      : socket_(std::move(socket)), strand_(std::move(strand)), shared_(std::move(shared)), idle_timer_(strand_) {}

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Strand only: sets up the session, sends SETTINGS, starts reading.
  void start() {
    boost::system::error_code ec;
    const auto peer = socket_.remote_endpoint(ec);
    if (ec) return close();
    remote_ = endpoint_text(peer);
    socket_.set_option(tcp::no_delay(true), ec);

    if (!make_session()) return close();
    const std::array<nghttp2_settings_entry, 2> settings = {{
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxConcurrentStreams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
    }};
    if (nghttp2_submit_settings(session_.get(), NGHTTP2_FLAG_NONE, settings.data(),
                                settings.size()) != 0 ||
        nghttp2_session_set_local_window_size(session_.get(), NGHTTP2_FLAG_NONE, 0,
                                              kConnectionWindow) != 0) {
      return close();
    }
    read();
    flush();
    arm_idle_timer();
  }

  /// Strand only. Idempotent: drops every stream (cancelling delay timers) and the socket.
  void close() {
    if (closed_) return;
    closed_ = true;
    streams_.clear();
    idle_timer_.cancel();
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    {
      // Why the lock: stop() and the acceptor walk the table from their own threads.
      std::lock_guard lock(shared_->mutex);
      if (in_table_) shared_->table.remove(handle_);
      in_table_ = false;
    }
    // The session goes with the last handler holding this connection; no nghttp2 call is made
    // after closed_ is set.
  }

  // Guarded by shared_->mutex: where this connection sits in the table, if it still does.
  Handle handle_{};
  bool in_table_ = false;

  /// Any thread: hands one answer to the strand.
  void post_response(std::int32_t stream_id, ServerResponse response) {
    asio::post(strand_, [self = shared_from_this(), stream_id,
                         response = std::move(response)]() mutable {
      self->on_response(stream_id, std::move(response));
    });
  }

  [[nodiscard]] const Strand& strand() const { return strand_; }

 private:
  // --- idleness ---------------------------------------------------------------------------

  /// Strand only. Moves this connection to the table's idle or busy side; false when it is no
  /// longer there (evicted, or the server stopping) and must end.
  bool set_idle(bool idle) {
    {
      // Why the lock: the acceptor reads the table to pick whom to evict.
      std::lock_guard lock(shared_->mutex);
      if (!in_table_) return false;
      if (idle) {
        shared_->table.mark_idle(handle_);
      } else {
        shared_->table.mark_busy(handle_);
      }
    }
    if (idle) {
      arm_idle_timer();
    } else {
      ++idle_generation_;  // the pending idle wait, if any, finds itself superseded
    }
    return true;
  }

  /// Strand only. Closes the connection once idle_timeout passes with no stream open: first a
  /// GOAWAY (the peer learns not to reuse it), then, if it is still open idle_timeout later, the
  /// socket.
  void arm_idle_timer() {
    const std::uint64_t generation = ++idle_generation_;
    idle_timer_.expires_after(shared_->options.idle_timeout);
    idle_timer_.async_wait([self = shared_from_this(), generation](const boost::system::error_code& ec) {
      if (ec || self->closed_ || generation != self->idle_generation_) return;
      if (!self->streams_.empty()) return;
      if (self->goaway_sent_) return self->close();
      detail::ConnectionCounters::bump(self->shared_->counters.closed_idle);
      self->goaway_sent_ = true;
      if (nghttp2_session_terminate_session(self->session_.get(), NGHTTP2_NO_ERROR) != 0) return self->close();
      self->arm_idle_timer();
      self->flush();  // closes once the GOAWAY is out and nothing more is wanted
    });
  }

  bool make_session() {
    nghttp2_session_callbacks* raw = nullptr;
    if (nghttp2_session_callbacks_new(&raw) != 0) return false;
    const CallbacksPtr callbacks(raw);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks.get(), &on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks.get(), &on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks.get(), &on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks.get(), &on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks.get(), &on_stream_close);
    nghttp2_session* session = nullptr;
    if (nghttp2_session_server_new(&session, callbacks.get(), this) != 0) return false;
    session_.reset(session);
    return true;
  }

  // --- I/O ---------------------------------------------------------------------------------

  void read() {
    socket_.async_read_some(
        asio::buffer(read_buffer_),
        [self = shared_from_this()](const boost::system::error_code& ec, std::size_t bytes) {
          self->on_read(ec, bytes);
        });
  }

  void on_read(const boost::system::error_code& ec, std::size_t bytes) {
    if (closed_) return;
    if (ec) return close();
    const auto consumed = nghttp2_session_mem_recv(session_.get(), read_buffer_.data(), bytes);
    // Negative: a protocol error (an HTTP/1.1 request fails the client magic here) or a callback
    // failure. The peer gets no answer; its transport reports the closed connection.
    if (consumed < 0 || closed_) return close();
    flush();
    if (!closed_) read();
  }

  /// Strand only. Writes whatever nghttp2 has queued, one write at a time.
  void flush() {
    if (closed_ || writing_) return;
    write_buffer_.clear();
    while (write_buffer_.size() < kMaxWriteBatch) {
      const std::uint8_t* data = nullptr;
      const auto produced = nghttp2_session_mem_send(session_.get(), &data);
      if (produced < 0) return close();
      if (produced == 0) break;
      write_buffer_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(produced));
    }
    if (write_buffer_.empty()) {
      // Nothing left to say and nothing more to hear (e.g. after GOAWAY): done.
      if (nghttp2_session_want_read(session_.get()) == 0 &&
          nghttp2_session_want_write(session_.get()) == 0) {
        close();
      }
      return;
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(write_buffer_),
                      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                        self->writing_ = false;
                        if (self->closed_) return;
                        if (ec) return self->close();
                        self->flush();
                      });
  }

  // --- answers -----------------------------------------------------------------------------

  void on_response(std::int32_t stream_id, ServerResponse&& response) {
    if (closed_) return;
    Stream* stream = find(stream_id);
    if (stream == nullptr || stream->responded) return;  // reset by the client, or answered twice
    stream->responded = true;
    if (response.delay.count() <= 0) return submit(stream_id, *stream, std::move(response));
    stream->delay = std::make_unique<asio::steady_timer>(strand_, response.delay);
    stream->delay->async_wait([self = shared_from_this(), stream_id,
                               response = std::move(response)](
                                  const boost::system::error_code& ec) mutable {
      if (ec || self->closed_) return;
      if (Stream* again = self->find(stream_id)) {
        self->submit(stream_id, *again, std::move(response));
      }
    });
  }

  void submit(std::int32_t stream_id, Stream& stream, ServerResponse&& response) {
    const bool head = stream.request.method == "HEAD";
    const bool bodyless_status =
        response.status < 200 || response.status == 204 || response.status == 304;
    stream.body_out = bodyless_status ? std::string() : std::move(response.body);
    stream.body_offset = 0;

    // Every string the nv array points into lives until nghttp2_submit_response returns.
    const std::string status_name = ":status";
    const std::string status = std::to_string(response.status);
    const std::string type_name = "content-type";
    const std::string length_name = "content-length";
    const std::string length = std::to_string(stream.body_out.size());
    std::vector<std::pair<std::string, const std::string*>> extra;  // lower-cased name, value
    extra.reserve(response.headers.size());
    for (const auto& [name, value] : response.headers) {
      std::string lowered = lower(name);
      if (skipped_response_header(lowered)) continue;
      if (lowered == type_name && !response.content_type.empty()) continue;
      extra.emplace_back(std::move(lowered), &value);
    }
    std::vector<nghttp2_nv> nva;
    nva.reserve(extra.size() + 3);
    nva.push_back(make_nv(status_name, status));
    if (!response.content_type.empty()) nva.push_back(make_nv(type_name, response.content_type));
    if (!bodyless_status) nva.push_back(make_nv(length_name, length));
    for (const auto& [name, value] : extra) nva.push_back(make_nv(name, *value));

    nghttp2_data_provider provider;
    provider.source.ptr = &stream;
    provider.read_callback = &read_body;
    const bool has_body = !head && !stream.body_out.empty();
    const int rv = nghttp2_submit_response(session_.get(), stream_id, nva.data(), nva.size(),
                                           has_body ? &provider : nullptr);
    if (rv != 0) {
      nghttp2_submit_rst_stream(session_.get(), NGHTTP2_FLAG_NONE, stream_id,
                                NGHTTP2_INTERNAL_ERROR);
    }
    flush();
  }

  static ssize_t read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length,
                           std::uint32_t* data_flags, nghttp2_data_source* source,
                           void*) noexcept {
    auto* stream = static_cast<Stream*>(source->ptr);
    const std::size_t left = stream->body_out.size() - stream->body_offset;
    const std::size_t n = std::min(left, length);
    std::memcpy(buf, stream->body_out.data() + stream->body_offset, n);
    stream->body_offset += n;
    if (stream->body_offset == stream->body_out.size()) {
      *data_flags |= NGHTTP2_DATA_FLAG_EOF;
      std::string().swap(stream->body_out);  // sent: give the memory back now
      stream->body_offset = 0;
    }
    return static_cast<ssize_t>(n);
  }

  // --- requests ----------------------------------------------------------------------------

  Stream* find(std::int32_t stream_id) {
    const auto it = streams_.find(stream_id);
    return it == streams_.end() ? nullptr : it->second.get();
  }

  void dispatch(std::int32_t stream_id, Stream& stream) {
    stream.dispatched = true;
    ServerRequest request = std::move(stream.request);
    stream.request = ServerRequest{};
    stream.request.method = request.method;  // kept: HEAD answers carry no body
    const auto question = request.target.find('?');
    request.path = request.target.substr(0, question);
    if (question != std::string::npos) request.query = request.target.substr(question + 1);
    request.remote = remote_;
    request.http2 = true;

    std::weak_ptr<Connection> weak = weak_from_this();
    Respond respond = [weak, stream_id](ServerResponse response) {
      // Weak: an answer that is never given must not keep a closed connection alive.
      if (auto self = weak.lock()) self->post_response(stream_id, std::move(response));
    };
    try {
      shared_->handler(std::move(request), respond);
    } catch (...) {
      ServerResponse error;
      error.status = 500;
      error.body = R"({"error":"handler failed"})";
      respond(std::move(error));  // dropped if the handler had already answered
    }
  }

  void reject_too_large(std::int32_t stream_id, Stream& stream) {
    stream.dispatched = true;
    std::string().swap(stream.request.body);
    ServerResponse response;
    response.status = 413;
    response.body = R"({"error":"request body too large"})";
    // Posted, not submitted here: this runs inside nghttp2_session_mem_recv.
    post_response(stream_id, std::move(response));
  }

  // --- nghttp2 callbacks: they run inside mem_recv on the strand and must not throw ---------

  static Connection& self(void* user_data) { return *static_cast<Connection*>(user_data); }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame,
                              void* user_data) noexcept {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    try {
      Connection& conn = self(user_data);
      // The first stream makes the connection busy; evicted meanwhile: fail, which closes it.
      if (conn.streams_.empty() && !conn.set_idle(false)) return NGHTTP2_ERR_CALLBACK_FAILURE;
      conn.streams_[frame->hd.stream_id] = std::make_unique<Stream>();
    } catch (...) {
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t, void* user_data) noexcept {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    Stream* stream = self(user_data).find(frame->hd.stream_id);
    if (stream == nullptr || stream->dispatched) return 0;
    const std::string_view key(reinterpret_cast<const char*>(name), namelen);
    const std::string_view val(reinterpret_cast<const char*>(value), valuelen);
    try {
      ServerRequest& request = stream->request;
      if (key == ":method") {
        request.method = val;
      } else if (key == ":path") {
        request.target = val;
      } else if (key == ":authority") {
        request.headers.emplace_back("host", val);
      } else if (!key.empty() && key.front() != ':') {
        request.headers.emplace_back(lower(key), val);  // HTTP/2 names are lower-case already
      }
    } catch (...) {
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void* user_data) noexcept {
    Connection& conn = self(user_data);
    Stream* stream = conn.find(stream_id);
    if (stream == nullptr || stream->dispatched) return 0;  // already answered: discard
    std::string& body = stream->request.body;
    try {
      if (len > conn.shared_->options.max_body_bytes - body.size()) {
        conn.reject_too_large(stream_id, *stream);
        return 0;
      }
      body.append(reinterpret_cast<const char*>(data), len);
    } catch (...) {
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) noexcept {
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      return 0;
    }
    Connection& conn = self(user_data);
    Stream* stream = conn.find(frame->hd.stream_id);
    if (stream == nullptr || stream->dispatched) return 0;
    try {
      conn.dispatch(frame->hd.stream_id, *stream);
    } catch (...) {
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return 0;
  }

  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t,
                             void* user_data) noexcept {
    Connection& conn = self(user_data);
    conn.streams_.erase(stream_id);  // a later answer for it finds nothing: dropped
    if (conn.streams_.empty() && !conn.closed_) {
      try {
        conn.set_idle(true);  // false (evicted): the pending close ends it
      } catch (...) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
    }
    return 0;
  }

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
