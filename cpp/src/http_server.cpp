// herald::http::Server: a generic HTTP/1.1 server (Boost.Beast) that hands every request to a
// Handler and writes whatever the Handler's Respond callable is later given.
#include "herald/http_server.hpp"

#include "connection_limits.hpp"
#include "herald/json_text.hpp"
#include "herald/thread_name.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <exception>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
// GCC's sanitizer builds report a false -Wmaybe-uninitialized inside Beast's parser (a
// boost::optional body limit); it is in Boost's code, so silence it for those headers only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#pragma GCC diagnostic pop

namespace herald::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
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

/// How long a connection being hung up on (after 413/400) keeps reading what the peer still
/// sends, so the kernel closes with FIN rather than RST and the peer gets to read the answer.
constexpr std::chrono::milliseconds kDrainTime{1000};

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

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

  Session(tcp::socket socket, std::shared_ptr<Shared> shared)
      : socket_(std::move(socket)), shared_(std::move(shared)), deadline_timer_(socket_.get_executor()) {
    beast::error_code ec;
    const tcp::endpoint peer = socket_.remote_endpoint(ec);
    if (!ec) {
      const std::string ip = peer.address().to_string();
      remote_ = (peer.address().is_v6() ? "[" + ip + "]" : ip) + ":" + std::to_string(peer.port());
    }
  }

  void start() { read(); }

  /// Called on the strand with an answer from a Respond.
  void answer(ServerResponse response, bool keep_alive, unsigned version) {
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

  /// Strand only: the server chose this idle connection to make room (it is out of the table).
  void evict() { close_socket(); }

  /// Only from stop(), with no io thread running.
  void close_now() {
    beast::error_code ignored;
    if (timer_) timer_->cancel();
    if (drain_timer_) drain_timer_->cancel();
    deadline_timer_.cancel();
    socket_.close(ignored);
  }

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

  void read() {
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

  void on_first_bytes(beast::error_code ec, std::size_t n) {
    if (ec) return finish();  // the peer left between requests, idle timeout, eviction or stop
    buffer_.commit(n);
    read_head();
  }

  void read_head() {
    expect(Phase::head, shared_->options.header_timeout);
    bhttp::async_read_header(socket_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_head(ec); });
  }

  void on_head(beast::error_code ec) {
    if (ec) return on_read_error(ec);
    if (!set_idle(false)) return finish();  // evicted just before the head completed: drop it
    if (parser_->is_done()) return on_request();
    expect(Phase::body, shared_->options.body_timeout);
    bhttp::async_read(socket_, buffer_, *parser_, [self = shared_from_this()](beast::error_code read_ec, std::size_t) {
      if (read_ec) return self->on_read_error(read_ec);
      self->on_request();
    });
  }

  void on_read_error(beast::error_code ec) {
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

  void on_request() {
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

  /// Enters `phase` with `timeout` from now (zero: no deadline). Cheap on the per-request path:
  /// the timer is re-armed only when the new deadline comes before its pending expiry, which the
  /// tick (never longer than the shortest timeout) makes rare.
  void expect(Phase phase, std::chrono::milliseconds timeout) {
    phase_ = phase;
    if (timeout.count() <= 0) {
      deadline_ = Clock::time_point::max();  // a pending wait finds nothing due and lapses
      return;
    }
    const auto now = Clock::now();
    deadline_ = now + timeout;
    if (!timer_pending_ || timer_expiry_ > deadline_) arm(std::min(deadline_, now + shared_->tick));
  }

  void arm(Clock::time_point at) {
    timer_pending_ = true;
    timer_expiry_ = at;
    const std::uint64_t generation = ++timer_generation_;  // a superseded wait ignores itself
    deadline_timer_.expires_at(at);
    deadline_timer_.async_wait([self = shared_from_this(), generation](beast::error_code ec) {
      self->on_timer(ec, generation);
    });
  }

  void on_timer(beast::error_code ec, std::uint64_t generation) {
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

  /// Moves this connection to the table's idle or busy side. False when it is no longer in the
  /// table (evicted, or the server stopping): the connection must end.
  bool set_idle(bool idle) {
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

  void close_socket() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  /// The once-only state behind one Respond (and its copies).
  struct Pending {
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

  Respond make_respond(bool keep_alive, unsigned version) {
    auto pending = std::make_shared<Pending>();
    pending->shared = shared_;
    pending->session = weak_from_this();
    pending->keep_alive = keep_alive;
    pending->version = version;
    return [pending = std::move(pending)](ServerResponse response) { pending->deliver(std::move(response)); };
  }

  void build(ServerResponse r, bool keep_alive, unsigned version) {
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

  void write() {
    expect(Phase::writing, shared_->options.write_timeout);
    bhttp::async_write(socket_, res_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_write(ec);
    });
  }

  void on_write(beast::error_code ec) {
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

  /// After our FIN: swallow what the peer still sends until it closes or kDrainTime passes.
  void drain() {
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

  /// The connection is done: close it and leave the server's table (pending handlers still hold
  /// `this`).
  void finish() {
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
