#pragma once
/// The libcurl side of http::Client (Client::Impl), shared by the files that each do one job of it:
///   curl_client.cpp    the I/O thread: the queue, the loop, starting and finishing transfers
///                      (one connection per h2c origin), answering callbacks, stopping
///   curl_transfer.cpp  an easy handle set up for one transfer and kept for the next; the
///                      callbacks that read an HTTP answer
///   smtp_transfer.cpp  what only a mail submission (smtp://, smtps://) sets and reads
/// The facade that sends plain http:// by h1_client.hpp instead is http_client.cpp. Internal to
/// the core.
///
/// libcurl's multi interface is driven by one dedicated thread, which loops over
/// curl_multi_perform and curl_multi_poll. submit() appends to a mutex-protected queue and calls
/// curl_multi_wakeup, the only multi call that is safe from another thread; everything else on
/// the multi and its easy handles happens on the I/O thread.
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <curl/curl.h>

#include "herald/http_client.hpp"

namespace herald::http {

namespace curl_detail {

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

/// One request on its way through libcurl: what the callbacks fill and the easy handle points at.
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

}  // namespace curl_detail

struct Client::Impl {
  struct Pending {
    Request request;
    Callback callback;
  };

  explicit Impl(Options options);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void enqueue(std::vector<Pending>&& batch);
  [[nodiscard]] std::size_t in_flight() const { return in_flight_.load(std::memory_order_acquire); }
  [[nodiscard]] Stats stats() const;

 private:
  using Transfer = curl_detail::Transfer;

  // curl_client.cpp
  void run();
  void poll(bool pending_bound);
  void start(Pending&& pending, bool h2c_retry = false, bool h2c_released = false);
  bool promote_h2c_openers();
  void fail_before_start(Transfer& t, std::string error);
  std::size_t collect_completions();
  [[nodiscard]] bool may_have_pending() const;
  void finish(CURL* easy, CURLcode result);
  void deliver(Callback& callback, Response&& response);
  void end_round();
  void answer_stopped(Callback& callback);
  void shutdown_on_thread();
  void answer_queued_as_stopped();

  // curl_transfer.cpp
  CURLcode configure(Transfer& t);
  CURLcode configure_transport(Transfer& t, const char* protocols, curl_write_callback on_line, bool kept);
  CURLcode configure_http(Transfer& t, bool post, bool pipewait, bool kept);
  [[nodiscard]] bool wants_pipewait(const Request& req) const;
  bool acquire_handle(Transfer& t);
  void release_handle(Transfer& t);

  // smtp_transfer.cpp
  CURLcode configure_smtp(Transfer& t);
  static long smtp_error_reply(CURL* easy);

  Options options_;
  // Declared before the handles below so that it is destroyed after them.
  curl_detail::MultiPtr multi_;
  struct IdleHandle {
    curl_detail::EasyPtr easy;
    std::uint8_t profile = curl_detail::kFreshHandle;  ///< what its last transfer left set (see configure())
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

}  // namespace herald::http
