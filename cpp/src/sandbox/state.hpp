#pragma once
/// The sandbox's shared state: records, ids, faults, message status timelines, callback settings
/// and the scheduler that sends status callbacks later. Every service handler works on one State;
/// the transport (Beast today, herald::http::Server later) only owns sockets.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "herald/crypto.hpp"
#include "herald/http_client.hpp"
#include "herald/sandbox.hpp"

namespace herald::sandbox::detail {

[[nodiscard]] std::int64_t epoch_ms() noexcept;

/// One point of a message's status timeline: from `at_ms` on, the message has `status`.
struct Step {
  std::int64_t at_ms = 0;
  std::string status;
  std::string error_code;
};

/// One accepted message. The body is kept raw and parsed only when someone asks for it, so
/// recording costs no JSON parse on the hot path.
struct Record {
  std::uint64_t seq = 0;  ///< set by State::record
  std::int64_t received_at_ms = 0;
  std::string service;  ///< "twilio", "sendgrid", "fcm", "apns", "slack", a /v1 provider, "hook:{name}"
  std::string id;       ///< the service's id; empty = "sbx-{seq}"
  std::string path;
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;  ///< lower-case x-* and idempotency-key, secrets masked
  /// Every request header (lower-case names), secrets masked (masked_headers): what the page shows.
  std::vector<std::pair<std::string, std::string>> request_headers;
  std::string method;
  std::string body;
  std::string to;
  std::string subject;
  std::string text;
  std::string idempotency_key;
  std::string account;          ///< Twilio account sid (for listings)
  std::vector<Step> timeline;   ///< empty: the message has no status
  nlohmann::json extra = nlohmann::json::object();  ///< service fields added to the listing

  [[nodiscard]] std::string public_id() const { return id.empty() ? "sbx-" + std::to_string(seq) : id; }
  /// The step in force at `now_ms` (the first one before it starts), or nullptr without a timeline.
  [[nodiscard]] const Step* step_at(std::int64_t now_ms) const;
};

/// What the faults decided for one request.
struct Verdict {
  unsigned status = 200;
  bool accepted = true;
  int retry_after_s = -1;  ///< >= 0: send a Retry-After header
  std::string error_code;  ///< "outage", "rate_limited", the fault's error_code, or "injected"
  bool custom_code = false;  ///< error_code came from Faults::error_code
  std::chrono::milliseconds latency{0};
};

/// Per-service status callback settings (PUT /_sandbox/callbacks/{service}).
struct CallbackSettings {
  bool enabled = true;
  std::chrono::milliseconds delay{50};
  std::string url;  ///< SendGrid's Event Webhook URL; others take the URL from each request
};

class State {
 public:
  State(std::uint64_t seed, std::string signing_secret);
  ~State();
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  // ---- faults and records --------------------------------------------------------------------
  /// Draws the faults for `service` ("*" applies when it has none). A rejection is counted.
  Verdict draw(const std::string& service, std::int64_t now_ms);
  /// Counts a request refused by validation.
  void count_rejected(const std::string& service);
  /// Stores an accepted message; returns its seq.
  std::uint64_t record(Record&& rec);
  /// The record with this public id, if any.
  [[nodiscard]] std::optional<Record> find(const std::string& id) const;
  /// Copies of the records matching `pred`, oldest first.
  [[nodiscard]] std::vector<Record> select(const std::function<bool(const Record&)>& pred) const;
  /// Copies of the last `n` records, newest first.
  [[nodiscard]] std::vector<Record> latest(std::size_t n) const;
  /// Records as JSON, oldest first; `service` empty = all.
  [[nodiscard]] nlohmann::json messages(const std::string& service) const;
  /// Records with seq > `after_seq` as JSON, oldest first, at most the newest `limit` of them
  /// (the page's long poll).
  [[nodiscard]] nlohmann::json messages_since(std::uint64_t after_seq, std::size_t limit) const;
  /// Calls `fire` once, on the scheduler thread: as soon as a record with seq > `after_seq`
  /// exists (at once when one does), or after `wait` without one. Dropped at shutdown.
  /// The seq of the newest record ever made (0: none yet); clear() does not lower it.
  [[nodiscard]] std::uint64_t last_seq() const;
  void when_newer(std::uint64_t after_seq, std::chrono::milliseconds wait, std::function<void()> fire);
  [[nodiscard]] nlohmann::json stats() const;
  void clear();

  [[nodiscard]] nlohmann::json faults_json() const;
  void set_faults(const std::string& service, const Faults& f);
  bool erase_faults(const std::string& service);
  void clear_faults();

  // ---- callbacks and settings ----------------------------------------------------------------
  [[nodiscard]] CallbackSettings callbacks(const std::string& service) const;
  void set_callbacks(const std::string& service, const CallbackSettings& s);
  [[nodiscard]] nlohmann::json callbacks_json() const;
  /// Runs `fn` on the scheduler thread after `delay`. Dropped when the state shuts down.
  void after(std::chrono::milliseconds delay, std::function<void()> fn);
  /// Called on each callback request just before it is sent (signatures that carry a time).
  using Signer = std::function<void(http::Request&)>;
  /// POSTs `requests` one after another (each after the previous one's answer), after `delay`.
  void post_in_order(std::chrono::milliseconds delay, std::vector<http::Request> requests, Signer sign = {});
  /// Stops the scheduler and the callback client. Idempotent.
  void shutdown();

  // ---- service state -------------------------------------------------------------------------
  [[nodiscard]] const std::string& signing_secret() const noexcept { return signing_secret_; }
  [[nodiscard]] const crypto::PrivateKey& sendgrid_key() const noexcept { return sendgrid_key_; }
  [[nodiscard]] const std::string& sendgrid_public_key() const noexcept { return sendgrid_public_; }
  /// A fresh id number for a service ("fcm-token", "fcm-message", "sendgrid", ...), from 1.
  std::uint64_t next_number(const std::string& counter);
  /// Random bytes from the seeded generator.
  std::string random_bytes(std::size_t n);

  /// FCM access tokens: issue one lasting the configured TTL; check one.
  std::pair<std::string, std::int64_t> issue_fcm_token();
  [[nodiscard]] bool fcm_token_valid(const std::string& token) const;
  void set_fcm_token_ttl(std::int64_t seconds);

  /// Slack: takes one token from `hook`'s bucket; false when empty (rate limited).
  bool slack_take(const std::string& hook);
  void set_slack_rate(double rate_per_s, double burst);
  [[nodiscard]] nlohmann::json settings_json() const;

 private:
  /// The listing's JSON of these records (bodies parsed, the status in force now).
  static nlohmann::json to_json(std::vector<Record> picked);

  // One mutex for records, counters, faults, settings and the generator: each request holds it
  // for a couple of look-ups and one vector push, far less than the HTTP work around it.
  mutable std::mutex mu_;
  std::vector<Record> records_;
  std::unordered_map<std::string, std::size_t> index_;  // public id -> position in records_
  std::uint64_t next_seq_ = 1;  // never reset, so ids stay unique for the life of the server
  struct Waiter {
    std::shared_ptr<std::atomic<bool>> done;  // set by whichever answers first: a record or the timeout
    std::function<void()> fire;
  };
  std::vector<Waiter> waiters_;  // long polls waiting for the next record (when_newer)
  struct Counters {
    std::uint64_t accepted = 0;
    std::uint64_t rejected = 0;
  };
  Counters total_;
  std::unordered_map<std::string, Counters> by_service_;
  std::unordered_map<std::string, Faults> faults_;
  std::map<std::string, CallbackSettings> callbacks_;
  std::unordered_map<std::string, std::uint64_t> numbers_;
  std::mt19937_64 rng_;

  std::string signing_secret_;
  crypto::PrivateKey sendgrid_key_;
  std::string sendgrid_public_;

  std::unordered_map<std::string, std::int64_t> fcm_tokens_;  // token -> expiry (epoch ms)
  std::int64_t fcm_ttl_s_ = 3600;
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point at;
  };
  std::unordered_map<std::string, Bucket> slack_buckets_;
  double slack_rate_ = 1.0;
  double slack_burst_ = 5.0;

  // The scheduler: its own io_context and thread, so callbacks never wait on the transport.
  std::mutex sched_mu_;  // guards shutdown against concurrent after()
  boost::asio::io_context sched_ioc_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> sched_work_;
  std::thread sched_thread_;
  std::unique_ptr<http::Client> client_;
  bool down_ = false;
};

}  // namespace herald::sandbox::detail
