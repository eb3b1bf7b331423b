// h2c::Connection (h2c_connection.hpp): one HTTP/2 cleartext connection of http::H2cServer. Its
// nghttp2 session is set up here and fed from the socket; the callbacks gather each stream's
// request, hand it to the Handler, and submit the answer its Respond posts back to the strand;
// idle connections are closed with a GOAWAY first.
#include "h2c_connection.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::http::h2c {

namespace {

/// Streams a client may open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
constexpr std::uint32_t kMaxConcurrentStreams = 1000;
/// Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE): a 1 MiB body needs no round trip.
constexpr std::uint32_t kStreamWindow = 1U << 20;
/// Connection-level receive window, raised from 64 KiB so many streams can upload at once.
constexpr std::int32_t kConnectionWindow = 16 << 20;
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

}  // namespace

Connection::Connection(tcp::socket socket, Strand strand, std::shared_ptr<Shared> shared)
    : socket_(std::move(socket)), strand_(std::move(strand)), shared_(std::move(shared)), idle_timer_(strand_) {}

void Connection::start() {
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

void Connection::close() {
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

void Connection::post_response(std::int32_t stream_id, ServerResponse response) {
  asio::post(strand_, [self = shared_from_this(), stream_id,
                       response = std::move(response)]() mutable {
    self->on_response(stream_id, std::move(response));
  });
}

// --- idleness ---------------------------------------------------------------------------

bool Connection::set_idle(bool idle) {
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

void Connection::arm_idle_timer() {
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

bool Connection::make_session() {
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

void Connection::read() {
  socket_.async_read_some(
      asio::buffer(read_buffer_),
      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t bytes) {
        self->on_read(ec, bytes);
      });
}

void Connection::on_read(const boost::system::error_code& ec, std::size_t bytes) {
  if (closed_) return;
  if (ec) return close();
  const auto consumed = nghttp2_session_mem_recv(session_.get(), read_buffer_.data(), bytes);
  // Negative: a protocol error (an HTTP/1.1 request fails the client magic here) or a callback
  // failure. The peer gets no answer; its transport reports the closed connection.
  if (consumed < 0 || closed_) return close();
  flush();
  if (!closed_) read();
}

void Connection::flush() {
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

void Connection::on_response(std::int32_t stream_id, ServerResponse&& response) {
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

void Connection::submit(std::int32_t stream_id, Stream& stream, ServerResponse&& response) {
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

ssize_t Connection::read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf,
                              std::size_t length, std::uint32_t* data_flags,
                              nghttp2_data_source* source, void*) noexcept {
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

Stream* Connection::find(std::int32_t stream_id) {
  const auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void Connection::dispatch(std::int32_t stream_id, Stream& stream) {
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

void Connection::reject_too_large(std::int32_t stream_id, Stream& stream) {
  stream.dispatched = true;
  std::string().swap(stream.request.body);
  ServerResponse response;
  response.status = 413;
  response.body = R"({"error":"request body too large"})";
  // Posted, not submitted here: this runs inside nghttp2_session_mem_recv.
  post_response(stream_id, std::move(response));
}

// --- nghttp2 callbacks: they run inside mem_recv on the strand and must not throw ---------

Connection& Connection::self(void* user_data) { return *static_cast<Connection*>(user_data); }

int Connection::on_begin_headers(nghttp2_session*, const nghttp2_frame* frame,
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

int Connection::on_header(nghttp2_session*, const nghttp2_frame* frame,
                          const std::uint8_t* name, std::size_t namelen,
                          const std::uint8_t* value, std::size_t valuelen, std::uint8_t,
                          void* user_data) noexcept {
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

int Connection::on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                              const std::uint8_t* data, std::size_t len,
                              void* user_data) noexcept {
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

int Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame,
                              void* user_data) noexcept {
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

int Connection::on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t,
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

}  // namespace herald::http::h2c
