// h1::Session (http_session.hpp): one HTTP/1.1 connection of http::Server on Boost.Beast. It reads
// a request in phases (idle, head, body) under one deadline timer, hands it to the Handler, writes
// the answer its Respond posts back to the strand (408, 413, 431 and 400 it writes itself), and
// after a last answer drains what the peer still sends before closing.
#include "http_session.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <exception>
#include <iterator>
#include <limits>
#include <string_view>
#include <utility>

#include <boost/asio/post.hpp>

namespace herald::http::h1 {

namespace {

/// How long a connection being hung up on (after 413/400) keeps reading what the peer still
/// sends, so the kernel closes with FIN rather than RST and the peer gets to read the answer.
constexpr std::chrono::milliseconds kDrainTime{1000};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

}  // namespace

Session::Session(tcp::socket socket, std::shared_ptr<Shared> shared)
    : socket_(std::move(socket)), shared_(std::move(shared)), deadline_timer_(socket_.get_executor()) {
  beast::error_code ec;
  const tcp::endpoint peer = socket_.remote_endpoint(ec);
  if (!ec) {
    const std::string ip = peer.address().to_string();
    remote_ = (peer.address().is_v6() ? "[" + ip + "]" : ip) + ":" + std::to_string(peer.port());
  }
}

void Session::answer(ServerResponse response, bool keep_alive, unsigned version) {
  if (closed_) return;
  if (response.delay.count() > 0) {
    if (!timer_) timer_.emplace(socket_.get_executor());
    timer_->expires_after(response.delay);
    timer_->async_wait([self = shared_from_this(), response = std::move(response), keep_alive,
                        version](beast::error_code ec) mutable {
      if (ec) return;
      response.delay = std::chrono::milliseconds{0};
      self->answer(std::move(response), keep_alive, version);
    });
    return;
  }
  build(std::move(response), keep_alive, version);
  write();
}

void Session::close_now() {
  beast::error_code ignored;
  if (timer_) timer_->cancel();
  if (drain_timer_) drain_timer_->cancel();
  deadline_timer_.cancel();
  socket_.close(ignored);
}

void Session::read() {
  if (!set_idle(true)) return finish();  // evicted while busy cannot happen; stopped can
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(
      std::min<std::size_t>(shared_->options.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
  parser_->body_limit(shared_->options.max_body_bytes);
  if (buffer_.size() > 0) return read_head();  // a pipelined request is already here
  expect(Phase::idle, shared_->options.idle_timeout);
  socket_.async_read_some(buffer_.prepare(kFirstRead), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
    self->on_first_bytes(ec, n);
  });
}

void Session::on_first_bytes(beast::error_code ec, std::size_t n) {
  if (ec) return finish();  // the peer left between requests, idle timeout, eviction or stop
  buffer_.commit(n);
  read_head();
}

void Session::read_head() {
  expect(Phase::head, shared_->options.header_timeout);
  bhttp::async_read_header(socket_, buffer_, *parser_,
                           [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_head(ec); });
}

void Session::on_head(beast::error_code ec) {
  if (ec) return on_read_error(ec);
  if (!set_idle(false)) return finish();  // evicted just before the head completed: drop it
  if (parser_->is_done()) return on_request();
  expect(Phase::body, shared_->options.body_timeout);
  bhttp::async_read(socket_, buffer_, *parser_, [self = shared_from_this()](beast::error_code read_ec, std::size_t) {
    if (read_ec) return self->on_read_error(read_ec);
    self->on_request();
  });
}

void Session::on_read_error(beast::error_code ec) {
  if (timed_out_) {
    // A half-sent request: tell the peer why before hanging up.
    build(error_response(408, "timeout", "request not received in time"), false, 11);
    timed_out_ = false;
    write();
    return;
  }
  if (closed_ || ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
      ec == asio::error::operation_aborted || ec == asio::error::connection_reset || ec == asio::error::eof) {
    return finish();
  }
  // An oversized or malformed request: answer once, then hang up.
  const bool too_large = ec == bhttp::error::body_limit || ec == bhttp::error::header_limit;
  if (too_large) detail::ConnectionCounters::bump(shared_->counters.closed_too_large);
  ServerResponse r = ec == bhttp::error::body_limit     ? error_response(413, "too_large")
                     : ec == bhttp::error::header_limit ? error_response(431, "too_large", "headers too large")
                                                        : error_response(400, "bad_request", ec.message());
  build(std::move(r), false, 11);
  write();
}

void Session::on_request() {
  expect(Phase::handling, {});
  auto& req = parser_->get();
  ServerRequest sreq;
  sreq.method = std::string(req.method_string());
  sreq.target = std::string(req.target());
  const auto q = sreq.target.find('?');
  sreq.path = sreq.target.substr(0, q);
  if (q != std::string::npos) sreq.query = sreq.target.substr(q + 1);
  sreq.headers.reserve(static_cast<std::size_t>(std::distance(req.begin(), req.end())));
  for (const auto& field : req) sreq.headers.emplace_back(lower(std::string_view(field.name_string().data(), field.name_string().size())), std::string(field.value()));
  sreq.body = std::move(req.body());
  sreq.remote = remote_;
  sreq.http2 = false;

  Respond respond = make_respond(req.keep_alive(), req.version());
  try {
    shared_->handler(std::move(sreq), respond);
  } catch (const std::exception& e) {
    respond(error_response(500, "internal", e.what()));
  } catch (...) {
    respond(error_response(500, "internal", "unknown exception"));
  }
}

// --- timeouts ------------------------------------------------------------------------------

void Session::expect(Phase phase, std::chrono::milliseconds timeout) {
  phase_ = phase;
  if (timeout.count() <= 0) {
    deadline_ = Clock::time_point::max();  // a pending wait finds nothing due and lapses
    return;
  }
  const auto now = Clock::now();
  deadline_ = now + timeout;
  if (!timer_pending_ || timer_expiry_ > deadline_) arm(std::min(deadline_, now + shared_->tick));
}

void Session::arm(Clock::time_point at) {
  timer_pending_ = true;
  timer_expiry_ = at;
  const std::uint64_t generation = ++timer_generation_;  // a superseded wait ignores itself
  deadline_timer_.expires_at(at);
  deadline_timer_.async_wait([self = shared_from_this(), generation](beast::error_code ec) {
    self->on_timer(ec, generation);
  });
}

void Session::on_timer(beast::error_code ec, std::uint64_t generation) {
  if (ec || generation != timer_generation_ || closed_) return;
  timer_pending_ = false;
  if (deadline_ == Clock::time_point::max()) return;
  const auto now = Clock::now();
  if (now < deadline_) return arm(std::min(deadline_, now + shared_->tick));
  auto& counters = shared_->counters;
  switch (phase_) {
    case Phase::idle:
      detail::ConnectionCounters::bump(counters.closed_idle);
      close_socket();
      break;
    case Phase::head:
    case Phase::body:
      // The read handler answers 408; cancel (not close) so that answer can still be written.
      detail::ConnectionCounters::bump(counters.closed_timeout);
      timed_out_ = true;
      socket_.cancel(ec);
      break;
    case Phase::writing:
      detail::ConnectionCounters::bump(counters.closed_timeout);
      close_socket();
      break;
    case Phase::handling:
    case Phase::closing:
      break;
  }
}

// --- bookkeeping ---------------------------------------------------------------------------

bool Session::set_idle(bool idle) {
  // Why the lock: the acceptor thread reads the table to pick whom to evict.
  std::lock_guard lock(shared_->mu);
  if (!in_table_) return false;
  if (idle) {
    shared_->table.mark_idle(handle_);
  } else {
    shared_->table.mark_busy(handle_);
  }
  return true;
}

void Session::close_socket() {
  if (closed_) return;
  closed_ = true;
  beast::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

struct Session::Pending {
  std::shared_ptr<Shared> shared;
  std::weak_ptr<Session> session;  // weak: the session's lifetime belongs to the server
  bool keep_alive = true;
  unsigned version = 11;
  std::atomic<bool> done{false};

  void deliver(ServerResponse response) {
    if (done.exchange(true)) return;  // a second call is ignored
    std::lock_guard lock(shared->mu);
    if (shared->stopped) return;
    if (auto s = session.lock()) {
      asio::post(s->executor(), [s, response = std::move(response), ka = keep_alive, v = version]() mutable {
        s->answer(std::move(response), ka, v);
      });
    }
  }

  Pending() = default;
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;
  /// A handler that drops every copy of Respond unanswered still gets the connection answered.
  ~Pending() {
    try {
      deliver(error_response(500, "internal", "handler dropped the response"));
    } catch (...) {  // NOLINT(bugprone-empty-catch): nothing sensible left to do in a destructor
    }
  }
};

Respond Session::make_respond(bool keep_alive, unsigned version) {
  auto pending = std::make_shared<Pending>();
  pending->shared = shared_;
  pending->session = weak_from_this();
  pending->keep_alive = keep_alive;
  pending->version = version;
  return [pending = std::move(pending)](ServerResponse response) { pending->deliver(std::move(response)); };
}

void Session::build(ServerResponse r, bool keep_alive, unsigned version) {
  if (r.status < 100 || r.status > 999) r = error_response(500, "internal", "handler gave an invalid status");
  res_ = {};
  res_.version(version);
  res_.result(r.status);
  if (!r.content_type.empty()) res_.set(bhttp::field::content_type, r.content_type);
  for (const auto& [name, value] : r.headers) {
    const std::string n = lower(name);
    // The framing is ours to decide.
    if (n == "content-length" || n == "transfer-encoding") continue;
    if (n == "connection") {
      if (lower(value) == "close") keep_alive = false;
      continue;
    }
    res_.insert(name, value);
  }
  res_.body() = std::move(r.body);
  res_.keep_alive(keep_alive);
  res_.prepare_payload();
  close_after_write_ = !keep_alive;
}

void Session::write() {
  expect(Phase::writing, shared_->options.write_timeout);
  bhttp::async_write(socket_, res_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    self->on_write(ec);
  });
}

void Session::on_write(beast::error_code ec) {
  if (ec || closed_) return finish();
  if (close_after_write_) {
    expect(Phase::closing, {});
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    buffer_.clear();
    drain();
    return;
  }
  read();
}

void Session::drain() {
  if (!drain_timer_) {
    drain_timer_.emplace(socket_.get_executor());
    drain_timer_->expires_after(kDrainTime);
    drain_timer_->async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->close_socket();
    });
  }
  // Into the request buffer, consumed at once: no per-connection drain buffer to keep.
  socket_.async_read_some(buffer_.prepare(kFirstRead), [self = shared_from_this()](beast::error_code ec, std::size_t) {
    if (!ec) {
      self->drain();
      return;
    }
    if (self->drain_timer_) self->drain_timer_->cancel();
    self->finish();
  });
}

void Session::finish() {
  close_socket();
  deadline_timer_.cancel();  // its pending wait holds a reference: let it go now
  std::shared_ptr<Session> self_in_table;
  {
    std::lock_guard lock(shared_->mu);
    if (in_table_) {
      self_in_table = shared_->table.remove(handle_);
      in_table_ = false;
    }
  }
  // self_in_table is released here, outside the lock; the caller's reference keeps `this`.
}

}  // namespace herald::http::h1
