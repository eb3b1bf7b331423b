#include "herald/thread_name.hpp"
#include "herald/sandbox.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http.hpp>

namespace herald::sandbox {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

namespace {

constexpr std::int64_t kMaxLatencyMs = 86'400'000;          // one day
constexpr std::uint64_t kBodyLimit = 16ull * 1024 * 1024;   // per request

[[nodiscard]] std::int64_t epoch_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// ---- Faults validation helpers ----------------------------------------------------------------

[[noreturn]] void bad_field(std::string_view key, std::string_view reason) {
  std::string msg = "faults.";
  msg.append(key);
  msg += ": ";
  msg.append(reason);
  throw std::invalid_argument(msg);
}

double rate_field(std::string_view key, const json& v) {
  if (!v.is_number()) bad_field(key, "must be a number between 0 and 1");
  const double d = v.get<double>();
  if (!(d >= 0.0 && d <= 1.0)) bad_field(key, "must be between 0 and 1");
  return d;
}

std::int64_t int_field(std::string_view key, const json& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) bad_field(key, "is too large");
    return static_cast<std::int64_t>(u);
  }
  if (!v.is_number_integer()) bad_field(key, "must be an integer");
  return v.get<std::int64_t>();
}

int status_field(std::string_view key, const json& v) {
  const std::int64_t s = int_field(key, v);
  if (s < 100 || s > 599) bad_field(key, "must be an HTTP status between 100 and 599");
  return static_cast<int>(s);
}

std::int64_t non_negative_field(std::string_view key, const json& v, std::int64_t max) {
  const std::int64_t n = int_field(key, v);
  if (n < 0 || n > max) bad_field(key, "must be between 0 and " + std::to_string(max));
  return n;
}

// ---- small HTTP helpers -----------------------------------------------------------------------

// Boost 1.74 Beast speaks boost::string_view; the rest of this file speaks std::string_view.
std::string_view to_std(beast::string_view s) noexcept { return {s.data(), s.size()}; }
beast::string_view to_beast(std::string_view s) noexcept { return {s.data(), s.size()}; }

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Percent-decoding; `plus_is_space` for query strings.
std::string url_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      const int hi = hex_value(s[i + 1]);
      const int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += (plus_is_space && c == '+') ? ' ' : c;
  }
  return out;
}

/// The decoded value of `name` in a query string, if present.
std::optional<std::string> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = pair.find('=');
    if (url_decode(pair.substr(0, eq), true) == name) {
      return eq == std::string_view::npos ? std::string{} : url_decode(pair.substr(eq + 1), true);
    }
  }
  return std::nullopt;
}

std::string error_body(std::string_view code, std::string_view message = {}) {
  json err = {{"code", code}};
  if (!message.empty()) err["message"] = message;
  return json{{"error", std::move(err)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

/// True for statuses whose responses must not carry a body.
bool bodyless_status(unsigned status) noexcept { return status < 200 || status == 204 || status == 304; }

// ---- shared state -----------------------------------------------------------------------------

/// One accepted message. The body is kept raw and parsed only when someone asks for it, so
/// recording costs no JSON parse on the hot path.
struct Record {
  std::uint64_t seq = 0;
  std::int64_t received_at_ms = 0;
  std::string provider;
  std::string path;
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct Counters {
  std::uint64_t accepted = 0;
  std::uint64_t rejected = 0;
};

/// What a send request is answered with.
struct Verdict {
  unsigned status = 202;
  bool accepted = true;
  std::uint64_t seq = 0;
  int retry_after_s = -1;  // >= 0: send a Retry-After header
  std::string error_code;  // set when rejected
  std::chrono::milliseconds latency{0};
};

/// Everything the sessions share. Held by shared_ptr from every session so that no handler
/// (including one destroyed late, with the io_context) can outlive it.
class State {
 public:
  explicit State(std::uint64_t seed) : rng_(seed) {}

  /// Draws the faults for `rec.provider` and records `rec` when accepted.
  Verdict decide(Record&& rec) {
    Verdict v;
    std::lock_guard lock(mu_);
    if (!faults_.empty()) {
      auto it = faults_.find(rec.provider);
      if (it == faults_.end()) it = faults_.find("*");
      if (it != faults_.end()) {
        const Faults& f = it->second;
        std::uniform_real_distribution<double> unit(0.0, 1.0);
        v.latency = f.latency;
        if (rec.received_at_ms < f.outage_until_ms) {
          v.status = 503;
          v.error_code = "outage";
        } else if (f.rate_limit_rate > 0.0 && unit(rng_) < f.rate_limit_rate) {
          v.status = 429;
          v.error_code = "rate_limited";
          v.retry_after_s = f.retry_after_s;
        } else if (f.error_rate > 0.0 && unit(rng_) < f.error_rate) {
          v.status = static_cast<unsigned>(f.error_status);
          v.error_code = f.error_code.empty() ? std::string("injected") : f.error_code;
        }
        v.accepted = v.error_code.empty();
      }
    }
    Counters& per = by_provider_.try_emplace(rec.provider).first->second;
    if (!v.accepted) {
      ++total_.rejected;
      ++per.rejected;
      return v;
    }
    ++total_.accepted;
    ++per.accepted;
    v.seq = next_seq_++;
    rec.seq = v.seq;
    records_.push_back(std::move(rec));
    return v;
  }

  /// Recorded messages as JSON, oldest first; `provider` empty = all.
  json messages(const std::string& provider) const {
    // Copy under the lock, parse bodies outside it: a large listing must not stall the senders.
    std::vector<Record> picked;
    {
      std::lock_guard lock(mu_);
      if (provider.empty()) {
        picked = records_;
      } else {
        for (const Record& r : records_) {
          if (r.provider == provider) picked.push_back(r);
        }
      }
    }
    json out = json::array();
    for (Record& r : picked) {
      json headers = json::object();
      for (auto& [k, val] : r.headers) headers[k] = std::move(val);
      json body = json::parse(r.body, nullptr, false);
      if (body.is_discarded()) body = std::move(r.body);
      json m = {{"seq", r.seq},
                {"provider", std::move(r.provider)},
                {"id", "sbx-" + std::to_string(r.seq)},
                {"received_at_ms", r.received_at_ms},
                {"path", std::move(r.path)},
                {"headers", std::move(headers)},
                {"body", std::move(body)}};
      if (!r.query.empty()) m["query"] = std::move(r.query);
      out.push_back(std::move(m));
    }
    return out;
  }

  json stats() const {
    std::lock_guard lock(mu_);
    json per = json::object();
    for (const auto& [name, c] : by_provider_) per[name] = {{"accepted", c.accepted}, {"rejected", c.rejected}};
    return {{"accepted", total_.accepted}, {"rejected", total_.rejected}, {"by_provider", std::move(per)}};
  }

  json faults_json() const {
    std::lock_guard lock(mu_);
    json out = json::object();
    for (const auto& [name, f] : faults_) out[name] = f.to_json();
    return out;
  }

  /// Forgets records and counters; the id sequence keeps counting.
  void clear() {
    std::lock_guard lock(mu_);
    records_.clear();
    total_ = {};
    by_provider_.clear();
  }
  void set_faults(const std::string& provider, const Faults& f) {
    std::lock_guard lock(mu_);
    faults_.insert_or_assign(provider, f);
  }
  bool erase_faults(const std::string& provider) {
    std::lock_guard lock(mu_);
    return faults_.erase(provider) > 0;
  }
  void clear_faults() {
    std::lock_guard lock(mu_);
    faults_.clear();
  }

 private:
  // One mutex for records, counters, faults and the generator: each request holds it for a couple
  // of hash look-ups and one vector push, far less than the HTTP work around it.
  mutable std::mutex mu_;
  std::vector<Record> records_;
  std::uint64_t next_seq_ = 1;  // never reset, so ids stay unique for the life of the server
  Counters total_;
  std::unordered_map<std::string, Counters> by_provider_;
  std::unordered_map<std::string, Faults> faults_;
  std::mt19937_64 rng_;
};

// ---- request handling -------------------------------------------------------------------------

using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

void answer(Response& res, unsigned status, std::string body, std::string_view content_type = "application/json") {
  res.result(status);
  res.set(http::field::content_type, to_beast(content_type));
  res.body() = std::move(body);
}

void method_not_allowed(Response& res, std::string_view allow) {
  answer(res, 405, error_body("method_not_allowed", "allowed: " + std::string(allow)));
  res.set(http::field::allow, to_beast(allow));
}

/// True for header names recorded with a message: x-* and idempotency-key.
bool recorded_header(std::string_view name) noexcept {
  if (name.size() >= 2 && (name[0] == 'x' || name[0] == 'X') && name[1] == '-') return true;
  return beast::iequals(to_beast(name), "idempotency-key");
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

/// A send (`/v1/{provider}/messages`) or a webhook (`/hooks/{name}`): draw faults, record.
std::chrono::milliseconds handle_send(State& state, Request& req, std::string provider, std::string_view path,
                                      std::string_view query, bool is_hook, Response& res) {
  Record rec;
  rec.received_at_ms = epoch_ms();
  rec.provider = std::move(provider);
  rec.path.assign(path);
  rec.query.assign(query);
  for (const auto& field : req) {
    const std::string_view name = to_std(field.name_string());
    if (!recorded_header(name)) continue;
    std::string key = lower(name);
    auto same = std::find_if(rec.headers.begin(), rec.headers.end(), [&](const auto& h) { return h.first == key; });
    if (same != rec.headers.end()) {
      same->second += ", ";
      same->second.append(to_std(field.value()));
    } else {
      rec.headers.emplace_back(std::move(key), std::string(to_std(field.value())));
    }
  }
  rec.body = std::move(req.body());

  Verdict v = state.decide(std::move(rec));
  if (v.accepted) {
    if (is_hook) {
      answer(res, 200, "ok", "text/plain");
    } else {
      const std::string seq = std::to_string(v.seq);
      std::string body;
      body.reserve(40 + seq.size());
      body += R"({"id":"sbx-)";
      body += seq;
      body += R"(","status":"accepted"})";
      answer(res, 202, std::move(body));
    }
    return v.latency;
  }
  if (bodyless_status(v.status)) {
    res.result(v.status);
  } else {
    answer(res, v.status, error_body(v.error_code));
  }
  if (v.retry_after_s >= 0) res.set(http::field::retry_after, std::to_string(v.retry_after_s));
  return v.latency;
}

/// The `/_sandbox/...` control surface.
void handle_control(State& state, Request& req, std::string_view path, std::string_view query, Response& res) {
  const http::verb method = req.method();
  if (path == "/_sandbox/messages") {
    if (method == http::verb::get) {
      const auto provider = query_param(query, "provider");
      answer(res, 200, dump(state.messages(provider.value_or(std::string{}))));
    } else if (method == http::verb::delete_) {
      state.clear();
      answer(res, 200, R"({"cleared":true})");
    } else {
      method_not_allowed(res, "GET, DELETE");
    }
    return;
  }
  if (path == "/_sandbox/stats") {
    if (method == http::verb::get) {
      answer(res, 200, dump(state.stats()));
    } else {
      method_not_allowed(res, "GET");
    }
    return;
  }
  if (path == "/_sandbox/health") {
    if (method == http::verb::get) {
      answer(res, 200, R"({"ok":true})");
    } else {
      method_not_allowed(res, "GET");
    }
    return;
  }
  if (path == "/_sandbox/faults") {
    if (method == http::verb::get) {
      answer(res, 200, dump(state.faults_json()));
    } else if (method == http::verb::delete_) {
      state.clear_faults();
      answer(res, 200, R"({"cleared":true})");
    } else {
      method_not_allowed(res, "GET, DELETE");
    }
    return;
  }
  constexpr std::string_view faults_prefix = "/_sandbox/faults/";
  if (path.substr(0, faults_prefix.size()) == faults_prefix && path.size() > faults_prefix.size()) {
    const std::string provider = url_decode(path.substr(faults_prefix.size()), false);
    if (method == http::verb::put) {
      const json body = json::parse(req.body(), nullptr, false);
      if (body.is_discarded()) {
        answer(res, 400, error_body("bad_json", "faults: body is not valid JSON"));
        return;
      }
      try {
        const Faults f = Faults::from_json(body);
        state.set_faults(provider, f);
        answer(res, 200, dump(json{{"provider", provider}, {"faults", f.to_json()}}));
      } catch (const std::invalid_argument& e) {
        answer(res, 400, error_body("invalid_faults", e.what()));
      }
    } else if (method == http::verb::get) {
      const json all = state.faults_json();
      if (auto it = all.find(provider); it != all.end()) {
        answer(res, 200, dump(*it));
      } else {
        answer(res, 404, error_body("not_found", "no faults set for '" + provider + "'"));
      }
    } else if (method == http::verb::delete_) {
      const bool erased = state.erase_faults(provider);
      answer(res, 200, dump(json{{"provider", provider}, {"cleared", erased}}));
    } else {
      method_not_allowed(res, "PUT, GET, DELETE");
    }
    return;
  }
  answer(res, 404, error_body("not_found", "no such path: " + std::string(path)));
}

/// Routes one request; fills `res` (status, headers, body) and returns the latency to add.
std::chrono::milliseconds route(State& state, Request& req, Response& res) {
  const std::string_view target = to_std(req.target());
  const auto qmark = target.find('?');
  const std::string_view path = target.substr(0, qmark);
  const std::string_view query = qmark == std::string_view::npos ? std::string_view{} : target.substr(qmark + 1);

  constexpr std::string_view send_prefix = "/v1/";
  constexpr std::string_view send_suffix = "/messages";
  if (path.size() > send_prefix.size() + send_suffix.size() && path.substr(0, send_prefix.size()) == send_prefix &&
      path.substr(path.size() - send_suffix.size()) == send_suffix) {
    const std::string_view provider =
        path.substr(send_prefix.size(), path.size() - send_prefix.size() - send_suffix.size());
    if (provider.find('/') == std::string_view::npos) {
      if (req.method() != http::verb::post) {
        method_not_allowed(res, "POST");
        return {};
      }
      return handle_send(state, req, url_decode(provider, false), path, query, false, res);
    }
  }
  constexpr std::string_view hook_prefix = "/hooks/";
  if (path.size() > hook_prefix.size() && path.substr(0, hook_prefix.size()) == hook_prefix) {
    if (req.method() != http::verb::post) {
      method_not_allowed(res, "POST");
      return {};
    }
    return handle_send(state, req, "hook:" + url_decode(path.substr(hook_prefix.size()), false), path, query, true,
                       res);
  }
  if (path.substr(0, 10) == "/_sandbox/") {
    handle_control(state, req, path, query, res);
    return {};
  }
  answer(res, 404, error_body("not_found", "no such path: " + std::string(path)));
  return {};
}

// ---- connections ------------------------------------------------------------------------------

/// One connection: read a request, answer it (after the latency fault, on a timer), repeat while
/// keep-alive holds. Every pending operation holds a shared_ptr to the session, so a timer or read
/// that completes (or is destroyed with the io_context) never touches a freed session.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<State> state) : socket_(std::move(socket)), state_(std::move(state)) {}

  void start() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(kBodyLimit);
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::end_of_stream) {
      beast::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    if (ec) {
      if (ec == asio::error::operation_aborted || ec == asio::error::connection_reset || ec == asio::error::eof) return;
      // A malformed or oversized request: answer once and hang up.
      res_ = {};
      res_.version(11);
      const bool too_big = ec == http::error::body_limit || ec == http::error::header_limit;
      answer(res_, too_big ? 413 : 400, error_body(too_big ? "too_large" : "bad_request", ec.message()));
      res_.keep_alive(false);
      res_.prepare_payload();
      write(true);
      return;
    }
    Request& req = parser_->get();
    const bool keep_alive = req.keep_alive();
    res_ = {};
    res_.version(req.version());
    std::chrono::milliseconds latency{0};
    try {
      latency = route(*state_, req, res_);
    } catch (const std::exception& e) {
      res_ = {};
      res_.version(req.version());
      answer(res_, 500, error_body("internal", e.what()));
    }
    res_.keep_alive(keep_alive);
    res_.prepare_payload();
    if (latency.count() > 0) {
      if (!timer_) timer_.emplace(socket_.get_executor());
      timer_->expires_after(latency);
      timer_->async_wait([self = shared_from_this(), keep_alive](beast::error_code timer_ec) {
        if (!timer_ec) self->write(!keep_alive);
      });
      return;
    }
    write(!keep_alive);
  }

  void write(bool close) {
    http::async_write(socket_, res_, [self = shared_from_this(), close](beast::error_code ec, std::size_t) {
      self->on_write(ec, close);
    });
  }

  void on_write(beast::error_code ec, bool close) {
    if (ec) return;
    if (close) {
      beast::error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      return;
    }
    read();
  }

  tcp::socket socket_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Response res_;
  std::optional<asio::steady_timer> timer_;  // made on the first delayed answer, reused after
  std::shared_ptr<State> state_;
};

tcp::endpoint resolve_endpoint(const std::string& host, std::uint16_t port) {
  beast::error_code ec;
  const auto addr = asio::ip::make_address(host, ec);
  if (!ec) return {addr, port};
  asio::io_context ctx;
  tcp::resolver resolver(ctx);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    throw std::runtime_error("sandbox: cannot resolve host '" + host + "': " + ec.message());
  }
  return results.begin()->endpoint();
}

}  // namespace

// ---- Faults -----------------------------------------------------------------------------------

nlohmann::json Faults::to_json() const {
  return {{"error_rate", error_rate},
          {"error_status", error_status},
          {"error_code", error_code},
          {"rate_limit_rate", rate_limit_rate},
          {"retry_after_s", retry_after_s},
          {"latency_ms", latency.count()},
          {"outage_until_ms", outage_until_ms}};
}

Faults Faults::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("faults: must be a JSON object");
  Faults f;
  bool has_until = false;
  bool has_for = false;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "error_rate") {
      f.error_rate = rate_field(key, v);
    } else if (key == "error_status") {
      f.error_status = status_field(key, v);
    } else if (key == "error_code") {
      if (!v.is_string()) bad_field(key, "must be a string");
      f.error_code = v.get<std::string>();
    } else if (key == "rate_limit_rate") {
      f.rate_limit_rate = rate_field(key, v);
    } else if (key == "retry_after_s") {
      f.retry_after_s = static_cast<int>(non_negative_field(key, v, std::numeric_limits<int>::max()));
    } else if (key == "latency_ms") {
      if (!v.is_number()) bad_field(key, "must be a number >= 0");
      const double ms = v.get<double>();
      if (!(ms >= 0.0)) bad_field(key, "must be >= 0");
      if (ms > static_cast<double>(kMaxLatencyMs)) bad_field(key, "must be at most 86400000 (one day)");
      f.latency = std::chrono::milliseconds(std::llround(ms));
    } else if (key == "outage_until_ms") {
      f.outage_until_ms = non_negative_field(key, v, std::numeric_limits<std::int64_t>::max());
      has_until = true;
    } else if (key == "outage_for_ms") {
      const std::int64_t for_ms = non_negative_field(key, v, std::numeric_limits<std::int64_t>::max() / 2);
      f.outage_until_ms = epoch_ms() + for_ms;
      has_for = true;
    } else {
      bad_field(key,
                "unknown key (known: error_rate, error_status, error_code, rate_limit_rate, retry_after_s, "
                "latency_ms, outage_until_ms, outage_for_ms)");
    }
  }
  if (has_until && has_for) bad_field("outage_for_ms", "cannot be combined with outage_until_ms");
  return f;
}

// ---- Server -----------------------------------------------------------------------------------

struct Server::Impl {
  explicit Impl(Options opts)
      : options_(std::move(opts)),
        state_(std::make_shared<State>(options_.seed)),
        ioc_(std::make_unique<asio::io_context>(static_cast<int>(std::max(1u, options_.threads)))) {
    if (options_.threads == 0) options_.threads = 1;
    const tcp::endpoint endpoint = resolve_endpoint(options_.host, options_.port);
    acceptor_.emplace(*ioc_);
    beast::error_code ec;
    const auto fail = [&](const char* what) {
      throw std::runtime_error("sandbox: cannot " + std::string(what) + " " + options_.host + ":" +
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
      threads_.emplace_back([ctx = ioc_.get()] {
        detail::name_this_thread("herald-sandbox");
        ctx->run();
      });
    }
  }

  ~Impl() { stop(); }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void accept() {
    // With one thread the io_context is an implicit strand; with more, each connection gets a
    // strand so its handlers never run concurrently.
    auto executor = options_.threads > 1 ? asio::any_io_executor(asio::make_strand(*ioc_))
                                         : asio::any_io_executor(ioc_->get_executor());
    acceptor_->async_accept(executor, [this](beast::error_code ec, tcp::socket socket) {
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
      std::make_shared<Session>(std::move(socket), state_)->start();
      accept();
    });
  }

  void stop() {
    // Serialises concurrent stop() calls; the second one finds nothing left to do.
    std::lock_guard lock(stop_mu_);
    if (!ioc_) return;
    ioc_->stop();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
    // The acceptor before the io_context it belongs to; destroying the io_context then destroys
    // every pending handler, and with them the sessions and their sockets.
    acceptor_.reset();
    ioc_.reset();
  }

  Options options_;
  std::shared_ptr<State> state_;
  std::unique_ptr<asio::io_context> ioc_;
  std::optional<tcp::acceptor> acceptor_;
  std::vector<std::thread> threads_;
  std::uint16_t port_ = 0;
  std::string url_;
  std::mutex stop_mu_;
};

Server::Server(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Server::~Server() {
  if (impl_) impl_->stop();
}

std::uint16_t Server::port() const { return impl_->port_; }
std::string Server::url() const { return impl_->url_; }

void Server::set_faults(const std::string& provider, const Faults& faults) { impl_->state_->set_faults(provider, faults); }
void Server::clear_faults() { impl_->state_->clear_faults(); }
nlohmann::json Server::messages(const std::string& provider) const { return impl_->state_->messages(provider); }
nlohmann::json Server::stats() const { return impl_->state_->stats(); }
void Server::clear() { impl_->state_->clear(); }
void Server::stop() { impl_->stop(); }

}  // namespace herald::sandbox
