// The HTTP/1.1 client on Beast (see h1_client.hpp). Everything below the public methods runs on
// the client's own thread: connections, their timers and the callbacks.
#include "h1_client.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "herald/thread_name.hpp"
#include "http_text.hpp"

namespace herald::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

using text::iequals;
using text::kBodyTooLarge;
using text::kStoppedError;
using text::trim;

/// Bodies past this fail the request, as on libcurl's side.
constexpr std::uint64_t kMaxBodyBytes = text::kMaxBodyBytes;
/// A response's header block may be this large (Beast's default is 8 KiB).
constexpr std::uint32_t kMaxHeaderBytes = 1u << 20;
/// An idle connection older than this is closed rather than reused (libcurl's CURLOPT_MAXAGE_CONN).
constexpr std::chrono::seconds kMaxIdleAge{118};

/// The standard string_view from Beast's (Boost's).
std::string_view ssv(beast::string_view s) { return {s.data(), s.size()}; }

/// A byte that a URL may carry to the server as it is.
constexpr bool plain_url_byte(char c) { return c > 0x20 && c < 0x7f; }

/// Beast's HTTP/1.1 parser writing the answer straight into a Response (names lower-cased, values
/// trimmed, the body appended): no message with a node allocated per header line in between.
class ResponseParser final : public bhttp::basic_parser<false> {
 public:
  ResponseParser() { response.headers.reserve(8); }
  Response response;

 private:
  void on_request_impl(bhttp::verb, beast::string_view, beast::string_view, int, beast::error_code&) override {}
  void on_response_impl(int code, beast::string_view, int, beast::error_code&) override { response.status = code; }
  void on_field_impl(bhttp::field, beast::string_view name, beast::string_view value, beast::error_code&) override {
    std::string lower(ssv(name));
    for (char& ch : lower) ch = text::ascii_lower(ch);
    response.headers.emplace_back(std::move(lower), std::string(trim(ssv(value))));
  }
  void on_header_impl(beast::error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& length, beast::error_code&) override {
    if (length && *length <= kMaxBodyBytes) response.body.reserve(static_cast<std::size_t>(*length));
  }
  std::size_t on_body_impl(beast::string_view body, beast::error_code& ec) override { return append(body, ec); }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, beast::error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, beast::string_view body, beast::error_code& ec) override {
    return append(body, ec);
  }
  void on_finish_impl(beast::error_code&) override {}

  std::size_t append(beast::string_view body, beast::error_code& ec) {
    if (response.body.size() + body.size() > kMaxBodyBytes) {
      ec = bhttp::error::body_limit;
      return 0;
    }
    response.body.append(body.data(), body.size());
    return body.size();
  }
};

}  // namespace

std::optional<H1Target> parse_h1_target(std::string_view url) {
  constexpr std::string_view scheme = "http://";
  if (url.size() <= scheme.size() || !iequals(url.substr(0, scheme.size()), scheme)) return std::nullopt;
  if (!std::all_of(url.begin(), url.end(), plain_url_byte)) return std::nullopt;
  std::string_view rest = url.substr(scheme.size());
  const auto authority_end = rest.find_first_of("/?#");
  const std::string_view authority = rest.substr(0, authority_end);
  if (authority.empty() || authority.find('@') != std::string_view::npos) return std::nullopt;  // userinfo: libcurl
  H1Target t;
  std::string_view host = authority;
  std::string_view port;
  if (authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port = after.substr(1);
    }
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return std::nullopt;
  const bool bracketed = authority.front() == '[';
  if (!bracketed && host.find_first_of("[]") != std::string_view::npos) return std::nullopt;
  if (!port.empty()) {
    unsigned value = 0;
    for (const char c : port) {
      if (c < '0' || c > '9' || value > 65535) return std::nullopt;
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return std::nullopt;
    t.port = static_cast<std::uint16_t>(value);
  }
  t.host = std::string(host);
  t.host_header = bracketed ? "[" + t.host + "]" : t.host;
  if (t.port != 80) t.host_header += ":" + std::to_string(t.port);
  std::string_view path = authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (const auto hash = path.find('#'); hash != std::string_view::npos) path = path.substr(0, hash);
  if (path.empty() || path.front() != '/') {
    t.path = "/";
    t.path += path;  // "?query" after a bare authority
  } else {
    t.path = std::string(path);
  }
  return t;
}

void write_request_head(std::string& out, const Request& r, const H1Target& t) {
  struct Line {
    std::string_view name;
    std::string_view value;
  };
  // Reused: no allocation per request once it has grown.
  thread_local std::vector<Line> lines;
  lines.clear();
  const auto erase = [](std::string_view name) {
    std::erase_if(lines, [name](const Line& l) { return iequals(l.name, name); });
  };
  lines.push_back({"Host", t.host_header});
  lines.push_back({"Accept", "*/*"});
  const bool post = r.method == "POST";
  bool content_type = false;
  for (const std::string& line : r.headers) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) {
      if (!line.empty() && line.back() == ';') lines.push_back({trim(std::string_view(line).substr(0, line.size() - 1)), ""});
      continue;
    }
    const std::string_view name = trim(std::string_view(line).substr(0, colon));
    const std::string_view value = trim(std::string_view(line).substr(colon + 1));
    if (name.empty()) continue;
    if (value.empty()) {  // libcurl: remove the line it would add; add nothing
      erase(name);
      continue;
    }
    if (iequals(name, "Host") || iequals(name, "Accept")) erase(name);  // the caller's replaces ours
    if (iequals(name, "Content-Type")) content_type = true;
    lines.push_back({name, value});
  }
  char length[24];
  if (post || !r.body.empty()) {
    if (post && !content_type) {
      erase("Content-Type");
      lines.push_back({"Content-Type", "application/x-www-form-urlencoded"});
    }
    erase("Content-Length");
    const auto end = std::to_chars(length, length + sizeof length, r.body.size()).ptr;
    lines.push_back({"Content-Length", std::string_view(length, static_cast<std::size_t>(end - length))});
  }
  std::size_t size = r.method.size() + t.path.size() + 13;  // " ", " HTTP/1.1\r\n", "\r\n"
  for (const Line& l : lines) size += l.name.size() + l.value.size() + 4;
  out.clear();
  out.reserve(size);
  out.append(r.method).append(1, ' ').append(t.path).append(" HTTP/1.1\r\n");
  for (const Line& l : lines) out.append(l.name).append(": ").append(l.value).append("\r\n");
  out.append("\r\n");
}

struct H1Client::Impl {
  struct Connection;
  using ConnectionPtr = std::shared_ptr<Connection>;

  /// One request on its way: which connection carries it, and whether it may go once more.
  struct Exchange {
    Job job;
    steady::time_point started;
    bool retried = false;  ///< already sent again once after a reused connection turned out closed
  };

  /// A keep-alive connection to one host and port.
  struct Connection : std::enable_shared_from_this<Connection> {
    explicit Connection(asio::io_context& io, std::string to)
        : socket(io), resolver(io), timer(io), key(std::move(to)) {}
    tcp::socket socket;
    tcp::resolver resolver;  ///< for a host given by name
    asio::steady_timer timer;
    std::string key;
    beast::flat_buffer buffer;
    std::string head;           ///< the request line and header lines of the exchange (capacity kept)
    bool head_request = false;  ///< a HEAD: its answer has no body, whatever its length says
    std::optional<ResponseParser> parser;
    std::optional<Exchange> exchange;
    std::uint64_t sequence = 0;  ///< of the exchange: a timer firing for an earlier one is ignored
    bool used = false;           ///< has carried an exchange to its end (so the server may have closed it since)
    bool timed_out = false;
    steady::time_point idle_since;
  };

  explicit Impl(H1Client& owner, Options options)
      : owner_(owner), options_(options), work_(asio::make_work_guard(io_)) {
    thread_ = std::thread([this] {
      detail::name_this_thread("herald-h1");
      io_.run();
    });
  }

  ~Impl() {
    asio::post(io_, [this] { stop_on_thread(); });
    work_.reset();
    if (thread_.joinable()) thread_.join();
    // A submit racing the destructor may have been posted after the thread ended: answer it here.
    io_.restart();
    io_.poll();
  }

  void submit(std::vector<Job> jobs) {
    asio::post(io_, [this, jobs = std::move(jobs)]() mutable {
      const auto now = steady::now();
      for (Job& job : jobs) start(Exchange{std::move(job), now, false});
    });
  }

 private:
  // ---- on the thread ----------------------------------------------------------------------

  static std::string key_of(const H1Target& t) { return t.host + "\n" + std::to_string(t.port); }

  void start(Exchange x) {
    if (stopping_) {
      answer(x, error_response(std::string(kStoppedError)));
      return;
    }
    const std::string key = key_of(x.job.target);
    if (ConnectionPtr c = take_idle(key)) {
      send(c, std::move(x));
      return;
    }
    if (!room_for(key)) {
      if (!close_an_idle_connection() || !room_for(key)) {
        waiting_.push_back(std::move(x));
        return;
      }
    }
    open(key, std::move(x));
  }

  /// An idle connection to `key` that is not too old, or null. Old ones are closed.
  ConnectionPtr take_idle(const std::string& key) {
    auto it = idle_.find(key);
    if (it == idle_.end()) return nullptr;
    auto& list = it->second;
    const auto now = steady::now();
    ConnectionPtr found;
    std::vector<ConnectionPtr> stale;
    while (!list.empty() && !found) {
      ConnectionPtr c = std::move(list.back());
      list.pop_back();
      if (now - c->idle_since < kMaxIdleAge) {
        found = std::move(c);
      } else {
        stale.push_back(std::move(c));
      }
    }
    if (list.empty()) idle_.erase(it);
    for (auto& c : stale) drop(c);  // after the map is left alone: drop() may start waiting requests
    return found;
  }

  bool room_for(const std::string& key) const {
    if (options_.max_total_connections > 0 && open_ >= options_.max_total_connections) return false;
    if (options_.max_host_connections > 0) {
      auto it = per_host_.find(key);
      if (it != per_host_.end() && it->second >= options_.max_host_connections) return false;
    }
    return true;
  }

  /// Makes room under the total cap by closing an idle connection (to any host).
  bool close_an_idle_connection() {
    for (auto it = idle_.begin(); it != idle_.end(); ++it) {
      if (it->second.empty()) continue;
      ConnectionPtr c = std::move(it->second.back());
      it->second.pop_back();
      if (it->second.empty()) idle_.erase(it);
      drop(c);
      return true;
    }
    return false;
  }

  void open(const std::string& key, Exchange x) {
    auto c = std::make_shared<Connection>(io_, key);
    if (all_.size() > 2 * open_ + 16) {
      std::erase_if(all_, [](const std::weak_ptr<Connection>& w) { return w.expired(); });
    }
    all_.push_back(c);
    ++open_;
    ++per_host_[key];
    const auto deadline = std::min(x.started + x.job.request.timeout, steady::now() + options_.connect_timeout);
    c->exchange = std::move(x);
    arm_timer(c, deadline);
    const H1Target& t = c->exchange->job.target;
    beast::error_code ec;
    const auto address = asio::ip::make_address(t.host, ec);
    if (!ec) {
      connect(c, std::vector<tcp::endpoint>{tcp::endpoint(address, t.port)});
      return;
    }
    c->resolver.async_resolve(t.host, std::to_string(t.port),
                              [this, c](beast::error_code rec, const tcp::resolver::results_type& results) {
                                if (rec) return fail(c, rec, "Could not resolve host: " + c->exchange->job.target.host);
                                std::vector<tcp::endpoint> endpoints;
                                for (const auto& entry : results) endpoints.push_back(entry.endpoint());
                                connect(c, std::move(endpoints));
                              });
  }

  void connect(const ConnectionPtr& c, std::vector<tcp::endpoint> endpoints) {
    asio::async_connect(c->socket, endpoints, [this, c](beast::error_code ec, const tcp::endpoint&) {
      if (ec) {
        const H1Target& t = c->exchange->job.target;
        const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - c->exchange->started);
        return fail(c, ec, "Failed to connect to " + t.host + " port " + std::to_string(t.port) + " after " +
                               std::to_string(waited.count()) + " ms");
      }
      beast::error_code ignored;
      c->socket.set_option(tcp::no_delay(true), ignored);
      c->socket.set_option(asio::socket_base::keep_alive(true), ignored);
      Exchange x = std::move(*c->exchange);
      c->exchange.reset();
      send(c, std::move(x));
    });
  }

  void send(const ConnectionPtr& c, Exchange x) {
    c->exchange = std::move(x);
    c->timed_out = false;
    ++c->sequence;
    const Request& r = c->exchange->job.request;
    arm_timer(c, c->exchange->started + r.timeout);
    write_request_head(c->head, r, c->exchange->job.target);
    c->head_request = r.method == "HEAD";
    // The body goes from the exchange as it is: it stays there whole for a resend.
    const std::array<asio::const_buffer, 2> bytes{asio::buffer(c->head), asio::buffer(r.body)};
    asio::async_write(c->socket, bytes, [this, c](beast::error_code ec, std::size_t) {
      if (ec) return fail(c, ec, "Send failure");
      read(c);
    });
  }

  void read(const ConnectionPtr& c) {
    c->parser.emplace();
    c->parser->body_limit(kMaxBodyBytes);
    c->parser->header_limit(kMaxHeaderBytes);
    if (c->head_request) c->parser->skip(true);
    // The header first: Beast 1.74 does not hold a Content-Length against the body limit (it
    // does a chunked body's), so a too large announced body is refused here before it is read.
    bhttp::async_read_header(c->socket, c->buffer, *c->parser, [this, c](beast::error_code ec, std::size_t) {
      if (ec) return fail(c, ec, "Recv failure");
      const long status = c->parser->response.status;
      if (status >= 100 && status < 200 && status != 101) return read(c);  // an interim answer: the final one follows
      if (const auto length = c->parser->content_length(); length && *length > kMaxBodyBytes) {
        return fail(c, bhttp::error::body_limit, "Recv failure");
      }
      if (c->parser->is_done()) return finish(c);
      bhttp::async_read(c->socket, c->buffer, *c->parser, [this, c](beast::error_code ec2, std::size_t) {
        if (ec2) return fail(c, ec2, "Recv failure");
        finish(c);
      });
    });
  }

  void finish(const ConnectionPtr& c) {
    c->timer.cancel();
    const bool keep = c->parser->keep_alive();
    Response response = std::move(c->parser->response);
    Exchange x = std::move(*c->exchange);
    c->exchange.reset();
    c->parser.reset();
    response.latency = std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - x.started);
    c->used = true;
    if (keep && !stopping_) {
      idle(c);
    } else {
      drop(c);
    }
    answer(x, std::move(response));
  }

  /// The exchange on `c` failed with `ec` while `doing`: it goes once more on a new connection
  /// when `c` was reused and the server closed it before answering anything, else its callback
  /// hears the failure. The connection is closed either way.
  void fail(const ConnectionPtr& c, beast::error_code ec, const std::string& doing) {
    c->timer.cancel();
    Exchange x = std::move(*c->exchange);
    c->exchange.reset();
    const bool nothing_read = !c->parser || !c->parser->got_some();
    const bool closed_by_server = ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
                                  ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
    const bool timed_out = c->timed_out;
    const bool was_used = c->used;
    drop(c);
    if (stopping_) return answer(x, error_response(std::string(kStoppedError)));
    if (timed_out) {
      const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - x.started);
      Response r = error_response("Operation timed out after " + std::to_string(waited.count()) + " milliseconds");
      r.timed_out = true;
      return answer(x, std::move(r));
    }
    if (was_used && nothing_read && closed_by_server && !x.retried) {
      x.retried = true;
      return start(std::move(x));
    }
    std::string error = doing + ": " + ec.message();
    if (ec == bhttp::error::body_limit) error = std::string(kBodyTooLarge);
    answer(x, error_response(redact(std::move(error), x.job.request)));
  }

  void arm_timer(const ConnectionPtr& c, steady::time_point deadline) {
    c->timer.expires_at(deadline);
    c->timer.async_wait([c, sequence = c->sequence](beast::error_code ec) {
      if (ec || c->sequence != sequence || !c->exchange) return;  // cancelled, or an earlier exchange's
      c->timed_out = true;
      c->resolver.cancel();
      beast::error_code ignored;
      c->socket.close(ignored);  // the pending resolve, connect, write or read ends with an error: fail() answers
    });
  }

  void idle(const ConnectionPtr& c) {
    c->idle_since = steady::now();
    idle_[c->key].push_back(c);
    run_waiting();
  }

  /// Closes `c` and gives its place to a request waiting for one.
  void drop(const ConnectionPtr& c) {
    beast::error_code ignored;
    c->socket.close(ignored);
    if (--open_, --per_host_[c->key] == 0) per_host_.erase(c->key);
    run_waiting();
  }

  void run_waiting() {
    if (waiting_.empty() || draining_) return;
    draining_ = true;
    std::size_t rounds = waiting_.size();
    while (rounds-- > 0 && !waiting_.empty()) {
      const std::string key = key_of(waiting_.front().job.target);
      if (!idle_.contains(key) && !room_for(key)) {
        waiting_.push_back(std::move(waiting_.front()));  // another host's turn may come first
        waiting_.pop_front();
        continue;
      }
      Exchange x = std::move(waiting_.front());
      waiting_.pop_front();
      start(std::move(x));
    }
    draining_ = false;
  }

  static Response error_response(std::string what) {
    Response r;
    r.transport_error = std::move(what);
    return r;
  }

  void answer(Exchange& x, Response&& response) {
    if (response.status == 0) {
      response.latency = std::chrono::duration_cast<std::chrono::microseconds>(steady::now() - x.started);
    }
    if (x.job.callback) {
      try {
        x.job.callback(std::move(response));
      } catch (...) {
        // Swallowed: an exception escaping here would end the thread and every other callback.
      }
    }
    owner_.in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    end_round_later();
  }

  /// The round ends once the handlers already queued have run (the other sockets that were ready
  /// with this one): the hook is queued behind them, once per round.
  void end_round_later() {
    if (!options_.after_answers || round_end_queued_) return;
    round_end_queued_ = true;
    asio::post(io_, [this] {
      round_end_queued_ = false;
      try {
        options_.after_answers();
      } catch (...) {
        // Swallowed, as a callback's exception is.
      }
    });
  }

  void stop_on_thread() {
    stopping_ = true;
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& x : waiting) answer(x, error_response(std::string(kStoppedError)));
    auto idle = std::move(idle_);
    idle_.clear();
    for (auto& [key, list] : idle) {
      for (auto& c : list) drop(c);
    }
    // Connections in use: closing makes their pending operation fail, and fail() answers.
    for (const auto& weak : all_) {
      if (auto c = weak.lock(); c && c->exchange) {
        c->timer.cancel();
        c->resolver.cancel();
        beast::error_code ignored;
        c->socket.close(ignored);
      }
    }
  }

  H1Client& owner_;
  Options options_;
  bool round_end_queued_ = false;  ///< the after_answers hook is posted and has not run yet
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  std::unordered_map<std::string, std::vector<ConnectionPtr>> idle_;
  std::unordered_map<std::string, std::size_t> per_host_;
  std::deque<Exchange> waiting_;
  std::vector<std::weak_ptr<Connection>> all_;  ///< every connection opened (pruned as they go): stop closes them
  std::size_t open_ = 0;
  bool stopping_ = false;
  bool draining_ = false;
};

H1Client::H1Client(Options options) : impl_(std::make_unique<Impl>(*this, options)) {}

H1Client::~H1Client() { impl_.reset(); }

void H1Client::submit_many(std::vector<Job> jobs) {
  if (jobs.empty()) return;
  in_flight_.fetch_add(jobs.size(), std::memory_order_acq_rel);
  impl_->submit(std::move(jobs));
}

}  // namespace herald::http
