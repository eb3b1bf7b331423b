// The libcurl client's I/O thread (curl_client.hpp): the queue submit() fills, the loop over
// curl_multi_perform and curl_multi_poll, transfers started and finished (h2c origins held to one
// connection each), callbacks answered, and stopping.
#include "curl_client.hpp"

#include "herald/thread_name.hpp"
#include "http_request_checks.hpp"
#include "http_text.hpp"

#include <algorithm>
#include <climits>
#include <iterator>
#include <stdexcept>
#include <utility>

namespace herald::http {

using namespace curl_detail;

namespace {

using text::ascii_lower;
using text::kStoppedError;

/// How long the I/O thread sleeps in curl_multi_poll when curl has no earlier timer; a wakeup
/// or socket activity ends the wait sooner, so this only bounds a missed-wakeup stall.
constexpr int kIdlePollMs = 1000;
/// The wait instead while curl may hold transfers back for a connection: a backstop for the
/// cases where libcurl 7.88 forgets to wake them (see run()).
constexpr int kPendingPollMs = 50;
/// Upper bound on HTTP/2 streams curl multiplexes on one connection (CURLMOPT_MAX_CONCURRENT_STREAMS).
constexpr long kMaxStreamsPerConnection = 1000;
/// The streams libcurl 7.88 lets share a new HTTP/2 connection until the server's SETTINGS arrive
/// (DEFAULT_MAX_CONCURRENT_STREAMS in its http2.h).
constexpr std::size_t kStreamsBeforeSettings = 100;

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

/// "scheme://host:port" of a URL, lower-cased: the key for a connection curl may reuse.
std::string url_origin(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == url.npos) return std::string(url);
  const auto end = url.find_first_of("/?#", scheme_end + 3);
  std::string origin(url.substr(0, end));
  std::transform(origin.begin(), origin.end(), origin.begin(), ascii_lower);
  return origin;
}

/// An HTTP/2 server may answer a POST before reading its body and then reset the stream with
/// NO_ERROR (nginx's `return` does). libcurl 7.88 reports that as CURLE_HTTP2_STREAM although
/// the answer arrived whole; calling it a failure would make the engine resend a notification
/// the provider already accepted. Whole means: a final status, and a body that matches its
/// Content-Length (or a status that has no body).
bool complete_despite_reset(CURL* easy, const Response& response) {
  long status = 0;
  curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200) return false;
  if (status == 204 || status == 304) return true;
  curl_off_t length = -1;
  curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
  return length >= 0 && static_cast<std::size_t>(length) == response.body.size();
}

}  // namespace

Client::Impl::Impl(Options options) : options_(options) {
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

Client::Impl::~Impl() {
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

void Client::Impl::enqueue(std::vector<Pending>&& batch) {
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

Client::Stats Client::Impl::stats() const {
  Stats s;
  s.idle_poll_expiries = idle_poll_expiries_.load(std::memory_order_relaxed);
  s.pending_poll_expiries = pending_poll_expiries_.load(std::memory_order_relaxed);
  return s;
}

void Client::Impl::run() {
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
void Client::Impl::poll(bool pending_bound) {
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

/// `h2c_released`: an h2c transfer that waited for its origin's opener and may now share its
/// connection (promote_h2c_openers), although the opener has not answered yet.
void Client::Impl::start(Pending&& pending, bool h2c_retry, bool h2c_released) {
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
bool Client::Impl::promote_h2c_openers() {
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

void Client::Impl::fail_before_start(Transfer& t, std::string error) {
  release_handle(t);
  Response response;
  response.transport_error = std::move(error);
  deliver(t.callback, std::move(response));
}

/// Answers every finished transfer; returns how many.
std::size_t Client::Impl::collect_completions() {
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
bool Client::Impl::may_have_pending() const {
  if (pipewait_active_ > 0) return true;
  const auto over = [&](std::size_t limit) { return limit > 0 && active_.size() > limit; };
  return over(options_.max_total_connections) || over(options_.max_host_connections);
}

void Client::Impl::finish(CURL* easy, CURLcode result) {
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

void Client::Impl::deliver(Callback& callback, Response&& response) {
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
void Client::Impl::end_round() {
  if (!std::exchange(answered_in_round_, false) || !options_.after_answers) return;
  try {
    options_.after_answers();
  } catch (...) {
    // Swallowed, as a callback's exception is.
  }
}

void Client::Impl::answer_stopped(Callback& callback) {
  Response response;
  response.transport_error = std::string(kStoppedError);
  deliver(callback, std::move(response));
}

/// Runs on the I/O thread once stopping_ is seen: callbacks keep their thread guarantee.
void Client::Impl::shutdown_on_thread() {
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

void Client::Impl::answer_queued_as_stopped() {
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

}  // namespace herald::http
