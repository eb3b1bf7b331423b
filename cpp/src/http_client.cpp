// HTTP client: libcurl's multi interface driven by one dedicated thread.
//
// The thread loops over curl_multi_perform and curl_multi_poll. submit() appends to a
// mutex-protected queue and calls curl_multi_wakeup, the only multi call that is safe from
// another thread; everything else on the multi and its easy handles happens on the I/O thread.
#include "herald/thread_name.hpp"
#include "herald/http_client.hpp"

#include "h1_client.hpp"
#include "http_text.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstdint>
#include <iterator>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <utility>

namespace herald::http {

namespace {

// ---------------------------------------------------------------------------------------------
// Owning wrappers for the C handles.

struct EasyDeleter {
  void operator()(CURL* easy) const noexcept { curl_easy_cleanup(easy); }
};
struct MultiDeleter {
  void operator()(CURLM* multi) const noexcept { curl_multi_cleanup(multi); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const noexcept { curl_slist_free_all(list); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
using MultiPtr = std::unique_ptr<CURLM, MultiDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

/// How long the I/O thread sleeps in curl_multi_poll when curl has no earlier timer; a wakeup
/// or socket activity ends the wait sooner, so this only bounds a missed-wakeup stall.
constexpr int kIdlePollMs = 1000;
/// The wait instead while curl may hold transfers back for a connection: a backstop for the
/// cases where libcurl 7.88 forgets to wake them (see run()).
constexpr int kPendingPollMs = 50;
/// Idle easy handles kept for reuse at most (each holds a few KiB of buffers).
constexpr std::size_t kMaxFreeHandles = 4096;
/// Upper bound on HTTP/2 streams curl multiplexes on one connection (CURLMOPT_MAX_CONCURRENT_STREAMS).
constexpr long kMaxStreamsPerConnection = 1000;
/// The streams libcurl 7.88 lets share a new HTTP/2 connection until the server's SETTINGS arrive
/// (DEFAULT_MAX_CONCURRENT_STREAMS in its http2.h).
constexpr std::size_t kStreamsBeforeSettings = 100;
/// Response headers reserved for at the first one (an API's answer carries about a dozen).
constexpr std::size_t kReservedHeaders = 12;

// What an easy handle's options are set for, so that a handle can serve the next transfer of the
// same kind without curl_easy_reset and the ~15 setopt calls after it (CURLOPT_PROTOCOLS_STR alone
// parses a string against every protocol curl knows). See Client::Impl::configure.
/// As curl_easy_init or curl_easy_reset leave it: nothing set.
constexpr std::uint8_t kFreshHandle = 0;
/// Set for something the next transfer might not overwrite (another method, SMTP...): reset it.
constexpr std::uint8_t kDirtyHandle = 1;
/// An HTTP POST: every option it sets but the per-request ones is the same for the next such POST.
constexpr std::uint8_t kHttpPostHandle = 2;
/// Flags on kHttpPostHandle for the options that a POST sets only sometimes.
constexpr std::uint8_t kPipewaitFlag = 4;
constexpr std::uint8_t kBasicAuthFlag = 8;

void ensure_curl_global_init() {
  // Why call_once: curl_global_init is not thread-safe and must run once before any handle.
  static std::once_flag once;
  static CURLcode result = CURLE_OK;
  std::call_once(once, [] { result = curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (result != CURLE_OK) {
    throw std::runtime_error(std::string("curl_global_init failed: ") + curl_easy_strerror(result));
  }
}

long clamp_to_long(std::size_t value) {
  return value > static_cast<std::size_t>(LONG_MAX) ? LONG_MAX : static_cast<long>(value);
}

long clamp_to_long(std::chrono::milliseconds value) {
  const auto count = value.count();
  if (count <= 0) return 0;  // curl: 0 = no timeout
  return count > LONG_MAX ? LONG_MAX : static_cast<long>(count);
}

using text::ascii_lower;
using text::iequals;
using text::is_space;
using text::kMaxBodyBytes;
using text::kStoppedError;
using text::trim;

constexpr bool ascii_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool starts_with_icase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

/// RFC 9110 token characters: what a method name may consist of.
bool is_token(std::string_view s) {
  constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
    return ascii_alnum(c) || kExtra.find(c) != kExtra.npos;
  });
}

// Two memchr scans (vectorised in libc): a byte-wise loop cost ~1k instructions per request over
// the URL and headers, find_first_of more still.
bool has_line_break(std::string_view s) {
  return s.find('\n') != std::string_view::npos || s.find('\r') != std::string_view::npos;
}

/// smtp:// and smtps:// URLs are mail submissions, not HTTP requests.
bool is_smtp_url(std::string_view url) {
  return starts_with_icase(url, "smtp://") || starts_with_icase(url, "smtps://");
}

// ---------------------------------------------------------------------------------------------
// Secret redaction for error text.

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    c = ascii_lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

/// The "user:password" part of scheme://user:password@host/..., or empty.
std::string_view url_userinfo(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == url.npos) return {};
  const auto rest = url.substr(scheme_end + 3);
  const auto authority = rest.substr(0, rest.find_first_of("/?#"));
  const auto at = authority.rfind('@');
  return at == authority.npos ? std::string_view{} : authority.substr(0, at);
}

/// "scheme://host:port" of a URL, lower-cased: the key for a connection curl may reuse.
std::string url_origin(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == url.npos) return std::string(url);
  const auto end = url.find_first_of("/?#", scheme_end + 3);
  std::string origin(url.substr(0, end));
  std::transform(origin.begin(), origin.end(), origin.begin(), ascii_lower);
  return origin;
}

/// Shorter values are not treated as secrets: a header value of "1" or a user name "bob" would
/// otherwise be masked inside IP addresses, ports and words ("[redacted]27.0.0.[redacted]").
constexpr std::size_t kMinSecretSize = 8;

void add_secret(std::vector<std::string>& out, std::string_view value) {
  if (value.size() >= kMinSecretSize) out.emplace_back(value);
}

void add_credential(std::vector<std::string>& out, std::string_view credential) {
  add_secret(out, credential);
  if (const auto colon = credential.find(':'); colon != credential.npos) {
    add_secret(out, credential.substr(0, colon));
    add_secret(out, credential.substr(colon + 1));
  }
}

/// Whether a header of this name carries a credential (Authorization, X-Api-Key, a token, a
/// signature...). Content-Type, Idempotency-Key and X-Herald-Id do not.
bool is_secret_header(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(), ascii_lower);
  if (lower == "idempotency-key") return false;
  for (const std::string_view word : {"auth", "key", "token", "secret", "password", "signature", "cookie",
                                      "session", "credential"}) {
    if (lower.find(word) != lower.npos) return true;
  }
  return false;
}

bool is_word_char(char c) { return ascii_alnum(c); }

}  // namespace

std::string redact(std::string text, const Request& request) {
  std::vector<std::string> secrets;
  const auto userinfo = url_userinfo(request.url);
  add_credential(secrets, userinfo);
  add_credential(secrets, percent_decode(userinfo));
  add_credential(secrets, request.basic_auth);
  for (const auto& header : request.headers) {
    const auto colon = header.find(':');
    if (colon == header.npos || !is_secret_header(trim(std::string_view(header).substr(0, colon)))) continue;
    const auto value = trim(std::string_view(header).substr(colon + 1));
    add_secret(secrets, value);
    // "Bearer <token>", "Basic <base64>": the credential alone, too.
    if (const auto space = value.find(' '); space != value.npos) add_secret(secrets, trim(value.substr(space + 1)));
  }
  // Longest first, so a secret that contains another is removed whole.
  std::sort(secrets.begin(), secrets.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  constexpr std::string_view kMask = "[redacted]";
  for (const auto& secret : secrets) {
    for (auto pos = text.find(secret); pos != text.npos;) {
      const auto end = pos + secret.size();
      // Whole tokens only: a match that runs on into letters or digits is part of another word.
      const bool starts_token = pos == 0 || !is_word_char(text[pos - 1]) || !is_word_char(secret.front());
      const bool ends_token = end == text.size() || !is_word_char(text[end]) || !is_word_char(secret.back());
      if (starts_token && ends_token) {
        text.replace(pos, secret.size(), kMask);
        pos = text.find(secret, pos + kMask.size());
      } else {
        pos = text.find(secret, pos + 1);
      }
    }
  }
  return text;
}

namespace {

// ---------------------------------------------------------------------------------------------
// libcurl callbacks. They must not let an exception escape into C code.

struct Transfer {
  Request request;
  Callback callback;
  Response response;
  EasyPtr easy;
  std::uint8_t handle_profile = kFreshHandle;  ///< what `easy` is configured for (see Client::Impl::configure)
  /// CURLOPT_HTTPHEADER's list: nodes over request.headers, read by curl until the handle is
  /// removed (see configure_http); the second holds them when the first is too small.
  std::array<curl_slist, 8> header_nodes{};
  std::vector<curl_slist> more_header_nodes;
  /// The list's last line (curl_slist::data is char*: a literal would need a const_cast).
  std::array<char, 8> no_expect = {'E', 'x', 'p', 'e', 'c', 't', ':', '\0'};
  std::array<char, CURL_ERROR_SIZE> error_buffer{};
  std::chrono::steady_clock::time_point started;
  bool body_too_large = false;
  bool pipewait = false;  ///< may sit in curl's pending queue while a connection negotiates
  bool h2c_opener = false;   ///< h2c request that opens its origin's one connection (prior knowledge)
  bool h2c_reuse = false;    ///< h2c request sent as 2TLS to ride that open connection
  bool h2c_retried = false;  ///< already restarted once after the connection went away
  // SMTP only (see configure_smtp).
  bool smtp = false;
  SlistPtr rcpt_list;              ///< envelope recipients: curl reads it until the handle is removed
  std::size_t upload_offset = 0;   ///< how much of request.body curl has read
  bool reply_complete = true;      ///< the last server reply line seen was a final one ("250 ...")
};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) noexcept {
  auto* transfer = static_cast<Transfer*>(user);
  const std::size_t bytes = size * count;
  if (bytes > kMaxBodyBytes - transfer->response.body.size()) {
    transfer->body_too_large = true;
    return 0;
  }
  try {
    transfer->response.body.append(data, bytes);
  } catch (...) {
    return 0;  // makes curl fail the transfer with CURLE_WRITE_ERROR
  }
  return bytes;
}

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) noexcept {
  auto* transfer = static_cast<Transfer*>(user);
  const std::size_t bytes = size * count;
  const std::string_view raw(data, bytes);
  auto& headers = transfer->response.headers;
  try {
    if (raw.size() >= 5 && (raw[0] == 'H' || raw[0] == 'h') && starts_with_icase(raw, "HTTP/")) {
      headers.clear();  // a new response begins (after 1xx or an auth round): drop the old one's
      return bytes;
    }
    // Index loops rather than three trim() calls per line: this runs for every header of every
    // answer. Blanks are those trim() drops.
    std::size_t end = raw.size();
    while (end > 0 && is_space(raw[end - 1])) --end;
    std::size_t begin = 0;
    while (begin < end && is_space(raw[begin])) ++begin;
    if (begin == end) return bytes;  // end of the header block
    const std::string_view line = raw.substr(begin, end - begin);
    if (begin > 0 && !headers.empty()) {
      headers.back().second.append(" ").append(line);  // obsolete line folding
      return bytes;
    }
    const auto colon = line.find(':');
    if (colon == line.npos) return bytes;
    std::size_t name_end = colon;
    while (name_end > 0 && is_space(line[name_end - 1])) --name_end;
    std::size_t value_begin = colon + 1;
    while (value_begin < line.size() && is_space(line[value_begin])) ++value_begin;
    // Room for a typical answer's headers at once rather than growing 1, 2, 4, 8...
    if (headers.capacity() == 0) headers.reserve(kReservedHeaders);
    auto& name = headers.emplace_back(line.substr(0, name_end), line.substr(value_begin)).first;
    for (char& c : name) c = ascii_lower(c);
  } catch (...) {
    return 0;
  }
  return bytes;
}

/// Why `req` may not be sent, or empty. Both clients would send these fields verbatim, so a line
/// break would let a caller inject header lines (or SMTP commands).
std::string_view validate(const Request& req) {
  if (!is_token(req.method)) return "invalid request method";
  if (has_line_break(req.url)) return "invalid url";
  for (const auto& header : req.headers) {
    if (has_line_break(header)) return "invalid request header";
  }
  if (has_line_break(req.basic_auth)) return "invalid basic_auth";
  // curl sends the envelope verbatim in MAIL FROM / RCPT TO: a line break would add commands.
  if (has_line_break(req.mail_from)) return "invalid mail_from";
  for (const auto& rcpt : req.mail_rcpt) {
    if (has_line_break(rcpt)) return "invalid mail_rcpt";
  }
  if (is_smtp_url(req.url) && req.mail_rcpt.empty()) return "smtp request without mail_rcpt";
  return {};
}

/// The Message-ID field of an RFC 5322 message's header block (up to the first empty line), or "".
std::string message_id_of(std::string_view message) {
  constexpr std::string_view kName = "message-id:";
  std::size_t pos = 0;
  while (pos < message.size()) {
    auto end = message.find('\n', pos);
    if (end == message.npos) end = message.size();
    const auto line = message.substr(pos, end - pos);
    if (trim(line).empty()) break;  // end of the header block
    if (starts_with_icase(line, kName)) return std::string(trim(line.substr(kName.size())));
    pos = end + 1;
  }
  return {};
}

/// CURLOPT_READFUNCTION for SMTP: hands curl the message from where it stopped. curl itself
/// dot-stuffs lines that start with '.' and appends the terminating "<CRLF>.<CRLF>".
std::size_t on_upload(char* buffer, std::size_t size, std::size_t count, void* user) noexcept {
  auto* transfer = static_cast<Transfer*>(user);
  const std::string& body = transfer->request.body;
  const std::size_t left = body.size() - transfer->upload_offset;
  const std::size_t bytes = std::min(left, size * count);
  std::copy_n(body.data() + transfer->upload_offset, bytes, buffer);
  transfer->upload_offset += bytes;
  return bytes;
}

/// For SMTP, curl passes every server reply line to the header callback. The latest reply (all
/// its lines) is kept as the response body, so an error can quote the server's reason.
std::size_t on_smtp_reply(char* data, std::size_t size, std::size_t count, void* user) noexcept {
  auto* transfer = static_cast<Transfer*>(user);
  const std::size_t bytes = size * count;
  std::string_view line = trim(std::string_view(data, bytes));
  try {
    std::string& body = transfer->response.body;
    if (transfer->reply_complete) {
      // A refusal (4xx/5xx) ends the transaction; what follows is QUIT's "221 Bye": keep the refusal.
      if (!body.empty() && (body.front() == '4' || body.front() == '5')) return bytes;
      body.clear();
    }
    // "250-..." continues a multi-line reply; "250 ..." (or a bare "250") ends it.
    transfer->reply_complete = !(line.size() > 3 && line[3] == '-');
    if (body.size() + line.size() < 4096) {
      if (!body.empty()) body += '\n';
      body.append(line);
    }
  } catch (...) {
    return 0;
  }
  return bytes;
}

}  // namespace

std::string Response::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return value;
  }
  return {};
}

// ---------------------------------------------------------------------------------------------

struct Client::Impl {
  struct Pending {
    Request request;
    Callback callback;
  };

  explicit Impl(Options options) : options_(options) {
    ensure_curl_global_init();
    multi_.reset(curl_multi_init());
    if (!multi_) throw std::runtime_error("curl_multi_init failed");
    CURLM* multi = multi_.get();
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      clamp_to_long(options_.max_total_connections));
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      clamp_to_long(options_.max_host_connections));
    if (options_.max_total_connections > 0) {
      // Otherwise the idle cache is sized 4x the handles currently added, and a lull in traffic
      // would close the keep-alive connections that the next burst wants to reuse.
      curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
                        clamp_to_long(options_.max_total_connections));
    }
    // Always allowed: a Request may ask for h2c (http2_prior_knowledge) whatever Options::http2
    // says, and multiplexing never applies to HTTP/1.1 transfers.
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    // curl's default of 100 streams per connection would open a new connection per hundred
    // concurrent requests; the server's SETTINGS still cap it (APNs: 1000, our sandbox: 1000).
    curl_multi_setopt(multi, CURLMOPT_MAX_CONCURRENT_STREAMS, kMaxStreamsPerConnection);
    // Started last: the thread uses every member above.
    thread_ = std::thread([this] {
      detail::name_this_thread("herald-http");
      run();
    });
  }

  ~Impl() {
    {
      // Why the lock: stopping_ is read by the I/O thread together with the queue.
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    curl_multi_wakeup(multi_.get());
    if (thread_.joinable()) thread_.join();
    // A submit() racing the destructor from another thread may have landed after the thread's
    // last drain; answer it here so its callback still fires once.
    answer_queued_as_stopped();
    end_round();
    // Members then go in reverse order: free easy handles before the multi that cached conns.
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void enqueue(std::vector<Pending>&& batch) {
    if (batch.empty()) return;
    bool was_empty = false;
    {
      // Why the lock: the I/O thread swaps the queue out concurrently.
      std::lock_guard lock(mutex_);
      const std::size_t count = batch.size();
      was_empty = queue_.empty();
      if (was_empty) {
        queue_ = std::move(batch);
      } else {
        std::move(batch.begin(), batch.end(), std::back_inserter(queue_));
      }
      // Counted under the lock, once queued: the I/O thread cannot answer (and decrement) first.
      in_flight_.fetch_add(count, std::memory_order_relaxed);
    }
    if (std::this_thread::get_id() == thread_.get_id()) {
      // From a callback: the loop is not polling, and will skip its next poll to pick this up.
      submitted_on_thread_ = true;
    } else if (was_empty) {
      // A non-empty queue means an earlier producer's wakeup is still due for the same swap.
      curl_multi_wakeup(multi_.get());
    }
  }

  [[nodiscard]] std::size_t in_flight() const { return in_flight_.load(std::memory_order_acquire); }

  [[nodiscard]] Stats stats() const {
    Stats s;
    s.idle_poll_expiries = idle_poll_expiries_.load(std::memory_order_relaxed);
    s.pending_poll_expiries = pending_poll_expiries_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  void run() {
    std::vector<Pending> batch;
    for (;;) {
      bool stop = false;
      {
        // Why the lock: producers append to queue_ from any thread.
        std::lock_guard lock(mutex_);
        batch.swap(queue_);
        stop = stopping_;
      }
      // A submit or stop wakes the poll only when it leaves the queue non-empty or sets
      // stopping_: with neither, the poll that just ended was not woken.
      if (poll_expiry_ != nullptr && batch.empty() && !stop) poll_expiry_->fetch_add(1, std::memory_order_relaxed);
      poll_expiry_ = nullptr;
      if (stop) {
        for (auto& pending : batch) answer_stopped(pending.callback);
        batch.clear();
        break;
      }
      for (auto& pending : batch) start(std::move(pending));
      batch.clear();

      int running = 0;
      curl_multi_perform(multi_.get(), &running);
      // libcurl 7.88 puts a handle that waits for a free connection ("pending") back on its run
      // list when another transfer finishes, but can drop the timer that would end the poll
      // for it: it then stalls until some socket fires. Another perform runs every listed
      // handle, so repeat while transfers finish and such a waiting handle may exist.
      for (;;) {
        const bool waiting_possible = may_have_pending();  // judged before finished ones leave
        if (collect_completions() == 0 || !waiting_possible) break;
        curl_multi_perform(multi_.get(), &running);
      }
      if (promote_h2c_openers()) submitted_on_thread_ = true;  // transfers released: perform again
      end_round();
      // Callbacks that submitted did not wake us: go straight back to the queue instead.
      if (!std::exchange(submitted_on_thread_, false)) poll(may_have_pending());
    }
    shutdown_on_thread();
  }

  /// Waits for socket activity, curl's next timer, a wake-up or the bound: kPendingPollMs when
  /// curl may hold transfers back waiting for a connection, else kIdlePollMs. A wait that can
  /// only have ended on that bound, with transfers in flight, is left in poll_expiry_ for the
  /// loop to count once it knows no wake-up ended it (see Stats).
  void poll(bool pending_bound) {
    const int wait_ms = pending_bound ? kPendingPollMs : kIdlePollMs;
    long curl_ms = -1;  // curl's next timer; -1: none
    curl_multi_timeout(multi_.get(), &curl_ms);
    int ready = 0;  // curl's sockets with events (the wake-up is not counted)
    curl_multi_poll(multi_.get(), nullptr, 0, wait_ms, &ready);
    const bool bounded_by_us = curl_ms < 0 || curl_ms > wait_ms;
    if (bounded_by_us && ready == 0 && !active_.empty()) {
      poll_expiry_ = pending_bound ? &pending_poll_expiries_ : &idle_poll_expiries_;
    }
  }

  /// "scheme://authority" of a URL, lower-cased: which server a cached connection goes to.
  static std::string smtp_endpoint(std::string_view url) {
    const auto scheme_end = url.find("://");
    const auto end = url.find_first_of("/?#", scheme_end == url.npos ? 0 : scheme_end + 3);
    std::string key(url.substr(0, end));
    std::transform(key.begin(), key.end(), key.begin(), ascii_lower);
    return key;
  }

  static std::string smtp_tls_profile(const Request& req) {
    return (req.require_tls ? "required\n" : req.no_tls ? "none\n" : "try\n") + req.ca_file;
  }

  /// What every transfer sets, HTTP or SMTP: the URL and allowed protocols, error buffer, socket
  /// options, timeouts, and where the body and the header (or SMTP reply) lines go. With `kept`
  /// (the handle's last transfer was of the same profile) only what differs per request.
  CURLcode configure_transport(Transfer& t, const char* protocols, curl_write_callback on_line, bool kept) {
    CURL* easy = t.easy.get();
    CURLcode rc = CURLE_OK;
    auto set = [&](CURLoption option, auto value) {
      if (rc == CURLE_OK) rc = curl_easy_setopt(easy, option, value);
    };
    set(CURLOPT_URL, t.request.url.c_str());
    set(CURLOPT_ERRORBUFFER, t.error_buffer.data());
    set(CURLOPT_TIMEOUT_MS, clamp_to_long(t.request.timeout));
    set(CURLOPT_WRITEDATA, static_cast<void*>(&t));
    set(CURLOPT_HEADERDATA, static_cast<void*>(&t));
    if (kept) return rc;
    set(CURLOPT_PROTOCOLS_STR, protocols);
    set(CURLOPT_NOSIGNAL, 1L);
    set(CURLOPT_TCP_NODELAY, 1L);
    set(CURLOPT_TCP_KEEPALIVE, 1L);
    set(CURLOPT_CONNECTTIMEOUT_MS, clamp_to_long(options_.connect_timeout));
    set(CURLOPT_WRITEFUNCTION, &on_body);
    set(CURLOPT_HEADERFUNCTION, on_line);
    return rc;
  }

  /// Configures an easy handle for one mail submission (smtp:// or smtps://): the envelope from
  /// the request, `body` uploaded as the message. No HTTP options apply.
  CURLcode configure_smtp(Transfer& t) {
    CURL* easy = t.easy.get();
    const Request& req = t.request;
    t.smtp = true;
    CURLcode rc = configure_transport(t, "smtp,smtps", &on_smtp_reply, false);
    auto set = [&](CURLoption option, auto value) {
      if (rc == CURLE_OK) rc = curl_easy_setopt(easy, option, value);
    };

    // An SMTP reply carries no message id: echo the message's own Message-ID as a response
    // header so that the adapter's classify() can record it.
    if (auto id = message_id_of(req.body); !id.empty()) t.response.headers.emplace_back("message-id", std::move(id));

    set(CURLOPT_MAIL_FROM, req.mail_from.c_str());
    for (const auto& rcpt : req.mail_rcpt) {
      curl_slist* head = curl_slist_append(t.rcpt_list.get(), rcpt.c_str());
      if (head == nullptr) return CURLE_OUT_OF_MEMORY;  // the list so far stays owned by rcpt_list
      if (!t.rcpt_list) t.rcpt_list.reset(head);
    }
    set(CURLOPT_MAIL_RCPT, t.rcpt_list.get());

    set(CURLOPT_UPLOAD, 1L);
    set(CURLOPT_READFUNCTION, &on_upload);
    set(CURLOPT_READDATA, static_cast<void*>(&t));
    set(CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body.size()));

    if (!req.basic_auth.empty()) set(CURLOPT_USERPWD, req.basic_auth.c_str());
    // smtps:// is TLS from the first byte; for smtp:// this decides STARTTLS.
    set(CURLOPT_USE_SSL, static_cast<long>(req.require_tls ? CURLUSESSL_ALL
                                           : req.no_tls    ? CURLUSESSL_NONE
                                                           : CURLUSESSL_TRY));
    if (!req.ca_file.empty()) set(CURLOPT_CAINFO, req.ca_file.c_str());
    // libcurl 7.88 reuses a cached smtp:// connection without comparing TLS wishes: a cleartext
    // one (opened under "try" where no STARTTLS was offered) would carry a require_tls message in
    // clear, and a STARTTLS one verified against another CA file is taken as is. So only the
    // first TLS profile seen for a server reuses connections there; other profiles get their own.
    auto [owner, inserted] = smtp_tls_profiles_.try_emplace(smtp_endpoint(req.url), smtp_tls_profile(req));
    if (!inserted && owner->second != smtp_tls_profile(req)) {
      set(CURLOPT_FRESH_CONNECT, 1L);
      set(CURLOPT_FORBID_REUSE, 1L);
    }
    return rc;
  }

  /// Whether an HTTP request waits for a connection to multiplex on (CURLOPT_PIPEWAIT).
  [[nodiscard]] bool wants_pipewait(const Request& req) const {
    // h2c: wait for the one connection rather than open one per transfer of a first burst.
    if (req.version == Request::Version::http2_prior_knowledge) return true;
    // Only https can be multiplexed under 2TLS; waiting on a plain-http connection would just
    // serialise the first burst behind one HTTP/1.1 response.
    return req.version == Request::Version::any && options_.http2 && starts_with_icase(req.url, "https://");
  }

  /// Configures the transfer's easy handle; returns the first setopt failure.
  ///
  /// A handle keeps its options from one transfer to the next (curl reinitialises its per-transfer
  /// state itself when a transfer starts). The next transfer sets again whatever differs per
  /// request; the rest stays when both transfers have the same profile: HTTP POSTs alike in
  /// PIPEWAIT and basic auth. Anything else (another method, SMTP, a failed setup) may leave an
  /// option the next would not overwrite (CUSTOMREQUEST, NOBODY, UPLOAD, USERPWD, FRESH_CONNECT...),
  /// so such a handle is reset, here or in release_handle.
  CURLcode configure(Transfer& t) {
    const Request& req = t.request;
    const bool smtp = is_smtp_url(req.url);
    const bool post = iequals(req.method, "POST");
    const bool pipewait = !smtp && wants_pipewait(req);
    std::uint8_t profile = kDirtyHandle;
    if (!smtp && post) {
      profile = kHttpPostHandle | (pipewait ? kPipewaitFlag : 0) | (req.basic_auth.empty() ? 0 : kBasicAuthFlag);
    }
    const bool kept = profile != kDirtyHandle && profile == t.handle_profile;
    if (!kept && t.handle_profile != kFreshHandle) curl_easy_reset(t.easy.get());
    t.handle_profile = kDirtyHandle;  // until every option below is set
    const CURLcode rc = smtp ? configure_smtp(t) : configure_http(t, post, pipewait, kept);
    if (rc == CURLE_OK) t.handle_profile = profile;
    return rc;
  }

  /// configure() for an HTTP request; `kept`: the handle is set up for this request's profile.
  CURLcode configure_http(Transfer& t, bool post, bool pipewait, bool kept) {
    CURL* easy = t.easy.get();
    const Request& req = t.request;
    CURLcode rc = configure_transport(t, "http,https", &on_header, kept);
    auto set = [&](CURLoption option, auto value) {
      if (rc == CURLE_OK) rc = curl_easy_setopt(easy, option, value);
    };
    if (req.version == Request::Version::http1_1) {
      set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
    } else if (req.version == Request::Version::http2_prior_knowledge) {
      // libcurl 7.88 bug (curl#10634, fixed in 8.0): a PRIOR_KNOWLEDGE transfer that reuses an
      // h2c connection stacks a second HTTP/2 layer on it and fails with "Error in the HTTP2
      // framing layer". So only the transfer that opens an origin's connection asks for prior
      // knowledge; the rest ask for 2TLS, which on http:// reuses that h2c connection as is.
      // start() decided which this is, and holds the others back while the opener connects.
      set(CURLOPT_HTTP_VERSION, static_cast<long>(t.h2c_reuse ? CURL_HTTP_VERSION_2TLS
                                                             : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE));
    } else if (options_.http2) {
      set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
    } else {
      set(CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
    }
    if (pipewait) {
      if (!kept) set(CURLOPT_PIPEWAIT, 1L);
      t.pipewait = true;
    }

    const std::string& method = req.method;
    if (!post && iequals(method, "GET")) {
      set(CURLOPT_HTTPGET, 1L);
    } else if (!post && iequals(method, "HEAD")) {
      set(CURLOPT_NOBODY, 1L);
    } else {
      if (!post) set(CURLOPT_CUSTOMREQUEST, method.c_str());
      if (post || !req.body.empty()) {
        // Size first: without it curl would strlen() the body.
        set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
        set(CURLOPT_POSTFIELDS, req.body.data());
      }
    }

    if (!req.basic_auth.empty()) {
      if (!kept) set(CURLOPT_HTTPAUTH, static_cast<unsigned long>(CURLAUTH_BASIC));
      set(CURLOPT_USERPWD, req.basic_auth.c_str());
    }

    // The list's nodes point at the request's own lines, which live as long as the Transfer:
    // curl_slist_append would allocate a node and a copy per line. curl only reads this list.
    std::vector<std::string>& lines = t.request.headers;
    const std::size_t count = lines.size() + 1;
    curl_slist* nodes = t.header_nodes.data();
    if (count > t.header_nodes.size()) {
      try {
        t.more_header_nodes.resize(count);
      } catch (const std::bad_alloc&) {
        return CURLE_OUT_OF_MEMORY;
      }
      nodes = t.more_header_nodes.data();
    }
    for (std::size_t i = 0; i < lines.size(); ++i) nodes[i] = curl_slist{lines[i].data(), &nodes[i + 1]};
    // An empty "Expect:" stops curl from waiting for 100-continue before large bodies.
    nodes[count - 1] = curl_slist{t.no_expect.data(), nullptr};
    set(CURLOPT_HTTPHEADER, nodes);
    return rc;
  }

  /// Gives the transfer an idle handle, with the profile its last transfer left, or a new one.
  bool acquire_handle(Transfer& t) {
    if (!free_handles_.empty()) {
      t.easy = std::move(free_handles_.back().easy);
      t.handle_profile = free_handles_.back().profile;
      free_handles_.pop_back();
      return true;
    }
    t.easy.reset(curl_easy_init());
    t.handle_profile = kFreshHandle;
    return t.easy != nullptr;
  }

  /// Takes the transfer's handle back for reuse. Whatever it keeps, the idle handle holds no
  /// pointer into the finished Transfer.
  void release_handle(Transfer& t) {
    EasyPtr easy = std::move(t.easy);
    if (!easy) return;
    if (free_handles_.size() >= kMaxFreeHandles) return;  // cleaned up here, while `t` lives
    CURL* handle = easy.get();
    std::uint8_t profile = t.handle_profile;
    if ((profile & kHttpPostHandle) != 0) {
      // Kept for the next POST of this profile, which sets these again (configure_transport, and
      // configure_http: POSTFIELDS, HTTPHEADER). Pointer options only: curl copies strings.
      curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, static_cast<char*>(nullptr));
      curl_easy_setopt(handle, CURLOPT_WRITEDATA, static_cast<void*>(nullptr));
      curl_easy_setopt(handle, CURLOPT_HEADERDATA, static_cast<void*>(nullptr));
      curl_easy_setopt(handle, CURLOPT_POSTFIELDS, static_cast<const char*>(nullptr));
      curl_easy_setopt(handle, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
      // curl's copy of the credentials, likewise set again by the next POST of this profile: an
      // idle handle should not hold a secret.
      if ((profile & kBasicAuthFlag) != 0) curl_easy_setopt(handle, CURLOPT_USERPWD, static_cast<const char*>(nullptr));
    } else if (profile != kFreshHandle) {
      curl_easy_reset(handle);
      profile = kFreshHandle;
    }
    free_handles_.push_back(IdleHandle{std::move(easy), profile});
  }

  /// `h2c_released`: an h2c transfer that waited for its origin's opener and may now share its
  /// connection (promote_h2c_openers), although the opener has not answered yet.
  void start(Pending&& pending, bool h2c_retry = false, bool h2c_released = false) {
    // h2c: one connection per origin. While its opener connects, the others wait here: a second
    // connection would be opened as HTTP/1.1 (2TLS on http://) or hit curl#10634 (prior knowledge).
    H2cOrigin* h2c = nullptr;
    if (pending.request.version == Request::Version::http2_prior_knowledge && !is_smtp_url(pending.request.url)) {
      h2c = &h2c_origins_[url_origin(pending.request.url)];
      if (h2c->state == H2cOrigin::opening && !h2c_released) {
        h2c->waiting.push_back(Waiting{std::move(pending), h2c_retry});
        return;
      }
    }
    auto transfer = std::make_unique<Transfer>();
    transfer->h2c_retried = h2c_retry;
    if (h2c != nullptr) {
      transfer->h2c_opener = h2c->state == H2cOrigin::closed;
      transfer->h2c_reuse = !transfer->h2c_opener;
      if (transfer->h2c_opener) h2c->state = H2cOrigin::opening;
    }
    transfer->request = std::move(pending.request);
    transfer->callback = std::move(pending.callback);

    if (const auto invalid = validate(transfer->request); !invalid.empty()) {
      fail_before_start(*transfer, std::string(invalid));
      return;
    }
    if (!acquire_handle(*transfer)) {
      fail_before_start(*transfer, "curl_easy_init failed");
      return;
    }
    if (const CURLcode rc = configure(*transfer); rc != CURLE_OK) {
      fail_before_start(*transfer, redact(curl_easy_strerror(rc), transfer->request));
      return;
    }
    CURL* easy = transfer->easy.get();
    transfer->started = std::chrono::steady_clock::now();
    if (const CURLMcode mc = curl_multi_add_handle(multi_.get(), easy); mc != CURLM_OK) {
      fail_before_start(*transfer, curl_multi_strerror(mc));
      return;
    }
    if (transfer->pipewait) ++pipewait_active_;
    if (transfer->h2c_opener) h2c_origins_[url_origin(transfer->request.url)].opener = easy;
    active_.emplace(easy, std::move(transfer));
  }

  /// Starts transfers held back for an h2c origin as soon as its opener is connected (not when its
  /// answer arrives, which would serialise them behind it): as many as libcurl lets share the
  /// connection before the server's SETTINGS arrive (kStreamsBeforeSettings, with the opener's).
  /// Past those, libcurl would open another connection, without prior knowledge, which an h2c
  /// server refuses: the rest wait for the opener's answer, when the server's limit is known.
  /// True when any were started.
  bool promote_h2c_openers() {
    std::vector<Waiting> released;
    for (auto& [origin, o] : h2c_origins_) {
      if (o.state != H2cOrigin::opening || o.opener == nullptr || o.waiting.empty() || o.early_started) continue;
      curl_off_t connected_us = 0;
      if (curl_easy_getinfo(o.opener, CURLINFO_CONNECT_TIME_T, &connected_us) != CURLE_OK || connected_us <= 0) continue;
      o.early_started = true;
      const auto count = static_cast<std::ptrdiff_t>(std::min(o.waiting.size(), kStreamsBeforeSettings - 1));
      std::move(o.waiting.begin(), o.waiting.begin() + count, std::back_inserter(released));
      o.waiting.erase(o.waiting.begin(), o.waiting.begin() + count);
    }
    for (auto& w : released) start(std::move(w.pending), w.retried, true);  // after the loop: start() may add origins
    return !released.empty();
  }

  void fail_before_start(Transfer& t, std::string error) {
    release_handle(t);
    Response response;
    response.transport_error = std::move(error);
    deliver(t.callback, std::move(response));
  }

  /// Answers every finished transfer; returns how many.
  std::size_t collect_completions() {
    std::size_t finished = 0;
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      // Copied out: the message is invalidated by curl_multi_remove_handle.
      CURL* easy = msg->easy_handle;
      const CURLcode result = msg->data.result;
      finish(easy, result);
      ++finished;
    }
    return finished;
  }

  /// Whether curl may hold transfers back waiting for a connection (see run()).
  [[nodiscard]] bool may_have_pending() const {
    if (pipewait_active_ > 0) return true;
    const auto over = [&](std::size_t limit) { return limit > 0 && active_.size() > limit; };
    return over(options_.max_total_connections) || over(options_.max_host_connections);
  }

  void finish(CURL* easy, CURLcode result) {
    const auto it = active_.find(easy);
    if (it == active_.end()) {
      curl_multi_remove_handle(multi_.get(), easy);  // not ours: cannot happen, but never leak it
      return;
    }
    std::unique_ptr<Transfer> t = std::move(it->second);
    active_.erase(it);
    if (t->pipewait) --pipewait_active_;
    if (t->h2c_opener) {
      // The opener's end decides for the transfers held back: the connection is open when it got
      // an answer; otherwise the next one tries to open it.
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      H2cOrigin& o = h2c_origins_[url_origin(t->request.url)];
      o.opener = nullptr;
      o.early_started = false;
      // A stream that failed on a connected h2c connection (a timeout) leaves the connection in
      // curl's cache: later transfers must reuse it (2TLS), never open it again with prior knowledge.
      curl_off_t connected_us = 0;
      curl_easy_getinfo(easy, CURLINFO_CONNECT_TIME_T, &connected_us);
      o.state = result == CURLE_OK || status > 0 || connected_us > 0 ? H2cOrigin::open : H2cOrigin::closed;
      auto held = std::exchange(o.waiting, {});
      for (auto& w : held) start(std::move(w.pending), w.retried);
    }
    if (t->h2c_reuse && result != CURLE_OK) {
      long new_connections = 0;
      curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &new_connections);
      if (new_connections > 0 && !t->h2c_retried) {
        // The h2c connection was gone, so curl opened one speaking HTTP/1.1, which an h2c server
        // rejects before reading any request: nothing was processed. Mark the origin closed and
        // send it again once, as (or behind) the opener of a new h2c connection.
        H2cOrigin& o = h2c_origins_[url_origin(t->request.url)];
        if (o.state == H2cOrigin::open) o.state = H2cOrigin::closed;
        curl_multi_remove_handle(multi_.get(), easy);
        release_handle(*t);
        start(Pending{std::move(t->request), std::move(t->callback)}, true);
        return;
      }
    }

    Response& response = t->response;
    response.latency = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - t->started);
    if (result == CURLE_HTTP2_STREAM && complete_despite_reset(easy, response)) {
      result = CURLE_OK;
    }
    if (result == CURLE_OK) {
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      response.status = status;
    } else {
      response.status = t->smtp ? smtp_error_reply(easy) : 0;
      response.timed_out = result == CURLE_OPERATION_TIMEDOUT;
      if (t->body_too_large) {
        response.transport_error = std::string(text::kBodyTooLarge);
      } else {
        std::string error = curl_easy_strerror(result);
        if (const std::string_view detail(t->error_buffer.data()); !detail.empty()) {
          error.append(": ").append(detail);
        }
        response.transport_error = redact(std::move(error), t->request);
      }
    }
    curl_multi_remove_handle(multi_.get(), easy);
    release_handle(*t);
    deliver(t->callback, std::move(response));
  }

  /// A failed SMTP transfer's status: the server's last reply code when it was a refusal (4xx or
  /// 5xx: 550 for a rejected recipient, 535 for bad credentials), else 0. A 2xx/3xx there is an
  /// earlier step's answer (the greeting, EHLO, 354 before the data) followed by a transport
  /// failure, and must not read as "taken".
  static long smtp_error_reply(CURL* easy) {
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    return code >= 400 ? code : 0;
  }

  /// An HTTP/2 server may answer a POST before reading its body and then reset the stream with
  /// NO_ERROR (nginx's `return` does). libcurl 7.88 reports that as CURLE_HTTP2_STREAM although
  /// the answer arrived whole; calling it a failure would make the engine resend a notification
  /// the provider already accepted. Whole means: a final status, and a body that matches its
  /// Content-Length (or a status that has no body).
  static bool complete_despite_reset(CURL* easy, const Response& response) {
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200) return false;
    if (status == 204 || status == 304) return true;
    curl_off_t length = -1;
    curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    return length >= 0 && static_cast<std::size_t>(length) == response.body.size();
  }

  void deliver(Callback& callback, Response&& response) {
    if (callback) {
      try {
        callback(std::move(response));
      } catch (...) {
        // Swallowed: an exception escaping here would terminate the I/O thread and with it
        // every other request's callback.
      }
    }
    // After the callback, so in_flight() == 0 means every callback has returned.
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    answered_in_round_ = true;
  }

  /// Options::after_answers, when this round ran a callback.
  void end_round() {
    if (!std::exchange(answered_in_round_, false) || !options_.after_answers) return;
    try {
      options_.after_answers();
    } catch (...) {
      // Swallowed, as a callback's exception is.
    }
  }

  void answer_stopped(Callback& callback) {
    Response response;
    response.transport_error = std::string(kStoppedError);
    deliver(callback, std::move(response));
  }

  /// Runs on the I/O thread once stopping_ is seen: callbacks keep their thread guarantee.
  void shutdown_on_thread() {
    auto active = std::move(active_);
    active_.clear();
    pipewait_active_ = 0;
    for (auto& [easy, transfer] : active) {
      curl_multi_remove_handle(multi_.get(), easy);
      release_handle(*transfer);
      answer_stopped(transfer->callback);
    }
    auto origins = std::move(h2c_origins_);
    h2c_origins_.clear();
    for (auto& [origin, o] : origins) {
      for (auto& w : o.waiting) answer_stopped(w.pending.callback);
    }
    // Callbacks above may have submitted more: answer until the queue stays empty.
    answer_queued_as_stopped();
    end_round();
  }

  void answer_queued_as_stopped() {
    for (;;) {
      std::vector<Pending> batch;
      {
        // Why the lock: a callback or another thread may still be appending.
        std::lock_guard lock(mutex_);
        batch.swap(queue_);
      }
      if (batch.empty()) return;
      for (auto& pending : batch) answer_stopped(pending.callback);
    }
  }

  Options options_;
  // Declared before the handles below so that it is destroyed after them.
  MultiPtr multi_;
  struct IdleHandle {
    EasyPtr easy;
    std::uint8_t profile = kFreshHandle;  ///< what its last transfer left set (see configure())
  };
  std::vector<IdleHandle> free_handles_;                              ///< I/O thread only
  std::unordered_map<CURL*, std::unique_ptr<Transfer>> active_;       ///< I/O thread only
  std::atomic<std::size_t> in_flight_{0};
  bool answered_in_round_ = false;   ///< a callback ran since the last end_round()
  bool submitted_on_thread_ = false;  ///< I/O thread only: a callback queued work
  std::size_t pipewait_active_ = 0;   ///< I/O thread only: active transfers with PIPEWAIT
  std::atomic<std::uint64_t> idle_poll_expiries_{0};     ///< written by the I/O thread only
  std::atomic<std::uint64_t> pending_poll_expiries_{0};  ///< written by the I/O thread only
  /// I/O thread only: the counter of the last poll's bound, if that poll may have expired on it.
  std::atomic<std::uint64_t>* poll_expiry_ = nullptr;
  /// One h2c origin's connection, as far as start() knows (see configure()).
  struct Waiting {
    Pending pending;
    bool retried = false;
  };
  struct H2cOrigin {
    enum State { closed, opening, open } state = closed;
    CURL* opener = nullptr;        ///< the transfer opening the connection, while it runs
    std::vector<Waiting> waiting;  ///< held back while the opener connects (see promote_h2c_openers)
    bool early_started = false;    ///< the first of them started once the opener connected
  };
  /// I/O thread only.
  std::unordered_map<std::string, H2cOrigin> h2c_origins_;
  /// I/O thread only: SMTP endpoint -> the TLS profile allowed to reuse connections to it.
  std::unordered_map<std::string, std::string> smtp_tls_profiles_;

  std::mutex mutex_;  ///< guards queue_ and stopping_
  std::vector<Pending> queue_;
  bool stopping_ = false;

  std::thread thread_;  ///< last: started after, and joined before, everything above is gone
};

// ---------------------------------------------------------------------------------------------

namespace {

/// Whether plain http:// may go by the HTTP/1.1 client: not when told otherwise, and not while
/// the environment names a proxy libcurl would send it through (read once, at construction).
bool beast_allowed(const Client::Options& options) {
  if (!options.http1_on_beast) return false;
  const char* choice = std::getenv("HERALD_HTTP_CLIENT");
  if (choice != nullptr && std::string_view(choice) == "curl") return false;
  for (const char* proxy : {"http_proxy", "all_proxy", "ALL_PROXY"}) {
    const char* value = std::getenv(proxy);
    if (value != nullptr && *value != '\0') return false;
  }
  return true;
}

/// The target of a request the HTTP/1.1 client can send as libcurl would: plain http://, no
/// basic auth (libcurl's), no h2c, and nothing validate() refuses (those go to libcurl, which
/// answers with the reason).
std::optional<H1Target> h1_target_of(const Request& r) {
  if (r.version == Request::Version::http2_prior_knowledge || !r.basic_auth.empty()) return std::nullopt;
  if (!validate(r).empty()) return std::nullopt;
  // A provider sends every request to the same URL: the last one parsed, per submitting thread.
  thread_local std::string last_url;
  thread_local std::optional<H1Target> last_target;
  if (r.url != last_url) {
    last_target = parse_h1_target(r.url);
    last_url = r.url;
  }
  return last_target;
}

}  // namespace

Client::Client(Options options) : impl_(std::make_unique<Impl>(options)) {
  if (beast_allowed(options)) {
    H1Client::Options o;
    o.max_total_connections = options.max_total_connections;
    o.max_host_connections = options.max_host_connections;
    o.connect_timeout = options.connect_timeout;
    o.after_answers = options.after_answers;
    h1_ = std::make_unique<H1Client>(o);
  }
}

Client::~Client() = default;

void Client::submit(Request request, Callback callback) {
  std::vector<std::pair<Request, Callback>> one;
  one.emplace_back(std::move(request), std::move(callback));
  submit_many(std::move(one));
}

void Client::submit_many(std::vector<std::pair<Request, Callback>> batch) {
  std::vector<Impl::Pending> pending;
  std::vector<H1Client::Job> jobs;
  pending.reserve(h1_ ? 0 : batch.size());
  for (auto& [request, callback] : batch) {
    if (h1_) {
      if (auto target = h1_target_of(request)) {
        jobs.push_back(H1Client::Job{std::move(request), std::move(*target), std::move(callback)});
        continue;
      }
    }
    pending.push_back(Impl::Pending{std::move(request), std::move(callback)});
  }
  if (!jobs.empty()) h1_->submit_many(std::move(jobs));
  if (!pending.empty()) impl_->enqueue(std::move(pending));
}

std::size_t Client::in_flight() const { return impl_->in_flight() + (h1_ ? h1_->in_flight() : 0); }

Client::Stats Client::stats() const { return impl_->stats(); }

}  // namespace herald::http
