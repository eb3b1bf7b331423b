#pragma once
/// The engine: intake, scheduling, routing, provider I/O and the delivery log, on one machine.
///
/// Threads: callers (send/status/...), the engine loop (an Asio io_context that owns all
/// scheduling state and calls the router), the store's writer, and the HTTP client's I/O thread.
/// Only the loop thread touches deliveries, the scheduler and provider queues; every other
/// thread reaches them by posting to the loop. The parts are listed in cpp/src/engine_impl.hpp.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "herald/backoff.hpp"
#include "herald/circuit_breaker.hpp"
#include "herald/clock.hpp"
#include "herald/engine_stats.hpp"
#include "herald/event.hpp"
#include "herald/log.hpp"
#include "herald/notification.hpp"
#include "herald/plan.hpp"
#include "herald/provider.hpp"
#include "herald/retention.hpp"
#include "herald/scheduler.hpp"
#include "herald/store.hpp"

namespace herald {

struct MetricsGauges;  // herald/metrics.hpp
struct LastHour;       // herald/metrics.hpp

struct EngineOptions {
  std::filesystem::path data_dir = "herald-data";
  Durability durability = Durability::process;
  std::vector<ProviderConfig> providers;
  RetryPolicy retry;
  LaneWeights weights;
  std::size_t route_batch = 512;  ///< notifications per router call (one GIL acquisition each)
  std::int64_t log_segment_bytes = 64 << 20;
  std::chrono::milliseconds close_timeout{10'000};  ///< how long close() waits for attempts in flight
  std::uint64_t seed = 0;  ///< jitter seed; 0 = from the clock
  /// Receipt server: "host:port" to listen on for providers' delivery callbacks ("" = off; port 0
  /// picks a free one). Callbacks go to <public_url>/receipts/<provider>.
  std::string receipts_listen;
  /// The base URL providers reach the receipt server at ("" = http://<listen address>).
  std::string public_url;
  /// A delivery accepted by a provider that sends receipts and still without a final one after
  /// this long is looked up through the provider's status API, where it has one.
  std::chrono::milliseconds reconcile_after{10 * 60'000};
  std::chrono::milliseconds reconcile_interval{30'000};  ///< how often to look for such deliveries
  /// What is kept of final notifications, their events and the delivery log (pruned by "herald-prune").
  RetentionOptions retention;
  /// Longest pause between retries of writes the disk refused (they are held in memory meanwhile).
  std::chrono::milliseconds store_retry_max{5'000};
  /// How often refused receipts are written to the log, counted by kind.
  std::chrono::milliseconds rejection_log_interval{10'000};
  /// Where the engine's own messages go (start, stop, the disk refusing writes, refused receipts);
  /// empty = nowhere. Called from the engine's threads.
  LogSink log;
  /// The time the engine goes by (scheduling, backoff, expiry, timestamps); null = the system's.
  /// A ManualClock lets tests move time instead of waiting for it.
  std::shared_ptr<Clock> clock;
};

/// What send() answers: the id, the state and whether this was a repeat of an idempotency key.
struct SendResult {
  Id id = 0;
  State state = State::queued;
  bool duplicate = false;
};

/// Whether the engine can do its work: the store takes writes, the engine is open.
struct EngineHealth {
  bool closing = false;
  StoreHealth store;  ///< store.degraded: writes are refused and held (disk full); delivery waits
};

class Engine {
 public:
  /// Opens the store, resumes unfinished notifications and starts the threads.
  /// Throws ConfigError for a bad provider configuration, StoreError when the store cannot open.
  Engine(EngineOptions options, std::shared_ptr<Router> router);
  ~Engine();  ///< close()
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Validates, deduplicates and stores one notification; returns once it is durable.
  SendResult send(Notification n);
  /// send() when it finishes without waiting for a commit (the intake journal takes the row, or
  /// the idempotency key is a repeat); otherwise nothing is accepted and `n` is left for send().
  /// For a caller holding a lock that other threads need while send() waits: the binding's GIL.
  std::optional<SendResult> send_if_quick(Notification& n);
  /// The same for many, with one durable commit. A validation error or an idempotency conflict
  /// rejects the whole batch before anything is accepted; the error names the item.
  std::vector<SendResult> send_many(std::vector<Notification> batch);

  [[nodiscard]] std::optional<StoredNotification> status(Id id);
  /// Every recorded event of one notification, oldest first.
  [[nodiscard]] std::vector<Event> trace(Id id);
  [[nodiscard]] std::vector<StoredNotification> dead_letters(std::size_t limit = 1000);
  /// One recipient's notifications, newest first (GET /v1/notifications?recipient=).
  [[nodiscard]] std::vector<StoredNotification> by_recipient(const std::string& recipient_id, std::size_t limit = 20);
  /// Puts a dead-lettered notification back in the queue with a fresh provider chain.
  /// Throws NotFound, or InvalidState when it is not dead-lettered.
  void retry(Id id);
  /// Cancels a notification that has not been sent yet. Returns false when it is final or in flight.
  bool cancel(Id id);
  /// The application reports that the recipient read the notification on `channel` (opened the
  /// push, clicked the link): recorded, and a step of its plan that succeeds when read does.
  /// Throws NotFound for an unknown id, ValidationError for an unknown channel.
  void acknowledge(Id id, const std::string& channel);
  /// Waits until every accepted notification is final and recorded. False on timeout.
  bool wait_idle(std::chrono::milliseconds timeout);
  /// Blocks until every recorded change is committed to the store.
  void flush();
  [[nodiscard]] EngineStats stats() const;
  [[nodiscard]] EngineHealth health() const;
  /// Each provider's circuit state, recent failure rate, p99 and cost (what rules read), by name.
  /// Read on the loop thread; throws EngineClosed once the loop has stopped.
  [[nodiscard]] std::vector<ProviderHealth> provider_health();
  /// Counters, latency histograms and queue gauges in the Prometheus text format (`GET /metrics`).
  /// Rendered on the loop thread; throws EngineClosed once the loop has stopped.
  [[nodiscard]] std::string metrics_text();
  /// The queue gauges of metrics_text() (lane depths, provider slots, store state), read on the
  /// loop thread; for the dashboard (`GET /v1/dashboard`). Throws EngineClosed like metrics_text().
  [[nodiscard]] MetricsGauges gauges();
  /// Provider answers per minute for the last hour of the engine's clock (accepted, and not), in
  /// total and for every configured provider; counted since start. For the dashboard; read on the
  /// loop thread (a copy of 60 slots per provider), throws EngineClosed like gauges().
  [[nodiscard]] LastHour attempts_last_hour();
  /// Runs a retention pass now (the pruner also runs one every retention.interval).
  PruneReport prune();
  /// Alert rules (evaluated by the Python layer, docs/alerts.md). declare_alert shows the rule in
  /// metrics_text() as herald_alert_firing{alert="<name>"} 0; alert_changed records that it began
  /// (firing) or ended: an alert_firing / alert_resolved event of notification 0 in the delivery
  /// log, with `detail`, and the gauge at 1 or 0. Throws EngineClosed once closed.
  void declare_alert(const std::string& name);
  void alert_changed(const std::string& name, bool firing, const std::string& detail);
  [[nodiscard]] const std::filesystem::path& data_dir() const;
  /// The engine's clock, in milliseconds since the epoch (a relative send_at counts from it).
  [[nodiscard]] std::int64_t now_ms() const;
  /// "<public_url>/receipts" when the receipt server runs, else "".
  [[nodiscard]] std::string receipts_url() const;
  /// Addresses not to be used again (unusable or opted out), oldest first.
  [[nodiscard]] std::vector<Suppression> suppressions(std::size_t limit = 10'000);
  /// Lifts a suppression (the recipient re-subscribed, or a new token owner). False when none.
  bool unsuppress(const std::string& channel, const std::string& address);
  /// Stops intake, lets attempts in flight finish (up to close_timeout), commits, stops threads.
  /// Idempotent.
  void close();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald
