// herald::http::Server: a generic HTTP/1.1 server (Boost.Beast) that hands every request to a
// Handler and writes whatever the Handler's Respond callable is later given.
#include "herald/http_server.hpp"

#include "herald/json_text.hpp"
#include "herald/thread_name.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <exception>
#include <iterator>
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

/// What the server, its sessions and every outstanding Respond share. Outlives the Server when a
/// Respond is kept after stop(); `stopped` then turns the Respond into a no-op.
struct Shared {
  Handler handler;
  std::size_t max_body_bytes = 0;
  /// Guards `stopped` and `sessions`. A Respond posts to a session's strand while holding it, so
  /// stop() (which sets `stopped` under it) never destroys the io_context under a post.
  std::mutex mu;
  bool stopped = false;
  /// Every open connection, owned here so one waiting for its Respond (no I/O pending) stays
  /// alive; the session removes itself when it ends, stop() drops the rest.
  std::unordered_map<Session*, std::shared_ptr<Session>> sessions;
};

/// One connection: read a request, hand it to the handler, write its answer when Respond is
/// called, repeat while keep-alive holds. All of it runs on the socket's strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Shared> shared) : socket_(std::move(socket)), shared_(std::move(shared)) {
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

  /// Only from stop(), with no io thread running.
  void close_now() {
    beast::error_code ignored;
    if (timer_) timer_->cancel();
    if (drain_timer_) drain_timer_->cancel();
    socket_.close(ignored);
  }

  [[nodiscard]] asio::any_io_executor executor() { return socket_.get_executor(); }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(shared_->max_body_bytes);
    bhttp::async_read(socket_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == bhttp::error::end_of_stream) {
      beast::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      finish();
      return;
    }
    if (ec) {
      if (ec == asio::error::operation_aborted || ec == asio::error::connection_reset || ec == asio::error::eof) {
        finish();
        return;
      }
      // An oversized or malformed request: answer once, then hang up.
      ServerResponse r = ec == bhttp::error::body_limit     ? error_response(413, "too_large")
                         : ec == bhttp::error::header_limit ? error_response(431, "too_large", "headers too large")
                                                            : error_response(400, "bad_request", ec.message());
      build(std::move(r), false, 11);
      write();
      return;
    }

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
    bhttp::async_write(socket_, res_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_write(ec);
    });
  }

  void on_write(beast::error_code ec) {
    if (ec) {
      finish();
      return;
    }
    if (close_after_write_) {
      beast::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
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
        if (ec) return;
        beast::error_code ignored;
        self->socket_.close(ignored);
      });
    }
    socket_.async_read_some(asio::buffer(drain_buf_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (!ec) {
        self->drain();
        return;
      }
      if (self->drain_timer_) self->drain_timer_->cancel();
      beast::error_code ignored;
      self->socket_.close(ignored);
      self->finish();
    });
  }

  /// The connection is done: leave the server's table (pending handlers still hold `this`).
  void finish() {
    std::lock_guard lock(shared_->mu);
    shared_->sessions.erase(this);
  }

  tcp::socket socket_;
  std::shared_ptr<Shared> shared_;
  std::string remote_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
  bool close_after_write_ = false;
  std::optional<asio::steady_timer> timer_;        // made on the first delayed answer, reused after
  std::optional<asio::steady_timer> drain_timer_;  // bounds drain()
  std::array<char, 16 * 1024> drain_buf_{};
};

}  // namespace

struct Server::Impl {
  Impl(ServerOptions opts, Handler handler)
      : options_(std::move(opts)),
        shared_(std::make_shared<Shared>()),
        ioc_(std::make_unique<asio::io_context>(static_cast<int>(std::max(1u, options_.threads)))) {
    if (options_.threads == 0) options_.threads = 1;
    if (options_.thread_name.size() > 15) options_.thread_name.resize(15);  // Linux's limit
    shared_->handler = std::move(handler);
    shared_->max_body_bytes = options_.max_body_bytes;

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

    accept();
    threads_.reserve(options_.threads);
    for (unsigned i = 0; i < options_.threads; ++i) {
      threads_.emplace_back([ctx = ioc_.get(), name = options_.thread_name] {
        detail::name_this_thread(name.c_str());
        ctx->run();
      });
    }
  }

  ~Impl() { stop(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void accept() {
    // Each connection's socket lives on its own strand, so its handlers (and the answers posted
    // to it from other threads) never run concurrently.
    acceptor_->async_accept(asio::make_strand(*ioc_), [this](beast::error_code ec, tcp::socket socket) {
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
      auto session = std::make_shared<Session>(std::move(socket), shared_);
      {
        std::lock_guard lock(shared_->mu);
        if (shared_->stopped) return;
        shared_->sessions.emplace(session.get(), session);
      }
      // start() touches the socket: do it on the session's strand.
      asio::post(session->executor(), [session] { session->start(); });
      accept();
    });
  }

  void stop() {
    // Serialises concurrent stop() calls; the second one finds nothing left to do.
    std::lock_guard stop_lock(stop_mu_);
    if (!ioc_) return;
    std::unordered_map<Session*, std::shared_ptr<Session>> sessions;
    {
      // From here on every Respond is a no-op, so nothing posts to the io_context we destroy.
      std::lock_guard lock(shared_->mu);
      shared_->stopped = true;
      sessions.swap(shared_->sessions);
    }
    ioc_->stop();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
    // No io thread runs now, so the sockets can be touched from here.
    beast::error_code ignored;
    acceptor_->close(ignored);
    for (auto& [ptr, session] : sessions) session->close_now();
    sessions.clear();
    // The acceptor before the io_context it belongs to; destroying the io_context then destroys
    // every pending handler, and with them the last references to the sessions.
    acceptor_.reset();
    ioc_.reset();
  }

  ServerOptions options_;
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<asio::io_context> ioc_;
  std::optional<tcp::acceptor> acceptor_;
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
void Server::stop() { impl_->stop(); }

}  // namespace herald::http
