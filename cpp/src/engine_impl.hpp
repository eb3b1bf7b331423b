#pragma once
/// The engine's insides, shared by the files that each do one job of it:
///   engine.cpp          start, close, the public calls, stats and metrics
///   intake.cpp          send / send_many: validation, idempotency, the durable insert
///   recovery.cpp        unfinished notifications resumed at start
///   dispatcher.cpp      the loop: scheduler → rules → provider queues → requests → answers
///   receipt_intake.cpp  providers' delivery callbacks
///   reconciler.cpp      status queries for deliveries whose receipt never came
///   control.cpp         cancel, retry, unsuppress, flush, wait_idle, acknowledge
///   cascade_shell.cpp   plans with many steps: starting steps as deliveries, hearing how they end
///   held_events.cpp     a "routed" event held for the delivery's next write (one events row, not two)
/// What happens to one notification is decided by the DeliveryMachine (delivery.hpp); these
/// files do the I/O around it.
///
/// Threads: callers (intake and control calls), the loop (an Asio io_context: every Delivery,
/// the scheduler and the provider queues live there), the store's writer, the HTTP client's I/O
/// thread, the receipt server's thread. Other threads reach loop state only by posting to it.
#include <array>
#include <atomic>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "answer_inbox.hpp"
#include "herald/call_gate.hpp"
#include "herald/circuit_breaker.hpp"
#include "herald/clock.hpp"
#include "herald/delivery.hpp"
#include "herald/engine.hpp"
#include "herald/errors.hpp"
#include "herald/http_client.hpp"
#include "herald/http_server.hpp"
#include "herald/idempotency_index.hpp"
#include "herald/lane_queue.hpp"
#include "herald/loop_timer.hpp"
#include "herald/metrics.hpp"
#include "herald/rate_limiter.hpp"
#include "herald/rejection_tally.hpp"

namespace herald {

namespace asio = boost::asio;

/// One configured provider as the loop sees it.
struct ProviderSlot {
  ProviderConfig config;
  std::unique_ptr<Adapter> adapter;
  ProviderFacts facts;  ///< what the delivery machine is told about it
  int in_flight = 0;    ///< requests in flight (a batch counts once)
  LaneQueue waiting;    ///< routed, waiting for a slot, by lane
  CircuitBreaker breaker;  ///< fed each answer; an open circuit sends its queue on (provider_health.cpp)
  RecentLatency latency;   ///< the latest round trips, for the rules' p99

  [[nodiscard]] bool has_waiting() const { return !waiting.empty(); }
  /// The next waiting id (critical first, then weighted turns); 0 when none.
  [[nodiscard]] Id peek_waiting() const { return waiting.peek(); }
  Id pop_waiting() { return waiting.pop(); }
};

/// A provider's health as rules read it (provider_health.cpp).
[[nodiscard]] ProviderHealth health_of(const ProviderSlot& p, std::int64_t now);

/// Counters read from any thread (EngineStats).
struct EngineCounters {
  std::atomic<std::uint64_t> received{0}, deduplicated{0}, attempts{0}, accepted{0}, retries{0}, failovers{0},
      expired{0}, dead_lettered{0}, cancelled{0}, in_doubt{0}, recovered{0}, suppressed{0}, receipts{0},
      receipts_rejected{0}, lookups{0}, reconciled{0}, batched{0}, pruned{0};
  std::atomic<std::int64_t> active{0};     ///< accepted, not final (includes not yet admitted)
  std::atomic<std::int64_t> in_flight{0};  ///< attempts and status queries awaiting an answer
};

/// The requests of one dispatch step; they leave once their "sending" marks commit. Each keeps
/// the earliest expires_at of its notifications (0 = none): when the commit waited past it (the
/// disk refused writes meanwhile), the request is not sent and the notification expires.
struct Sends {
  std::vector<std::pair<http::Request, http::Callback>> requests;
  std::vector<SendingMark> marks;  ///< one per attempt started (lookups start none)
  std::vector<std::int64_t> expires_at_ms;
  void add(http::Request req, http::Callback cb, std::int64_t expires = 0) {
    requests.emplace_back(std::move(req), std::move(cb));
    expires_at_ms.push_back(expires);
  }
  [[nodiscard]] bool empty() const { return requests.empty(); }
};

std::string suppression_key(const std::string& channel, const std::string& address);

struct Engine::Impl {
  EngineOptions options;
  std::shared_ptr<Clock> clock;
  std::shared_ptr<Router> router;
  std::unique_ptr<DeliveryStore> store;
  Store* sqlite = nullptr;  ///< the same store, for what is SQLite's own (retention)
  std::unique_ptr<http::Client> http;
  IdGenerator ids;
  IdempotencyIndex idempotency;
  EngineCounters count;
  CallGate gate;  ///< public calls enter it; close() waits for those inside to leave

  // ---- loop thread state ----
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  AnswerInbox answers{io};  ///< the client's callbacks keep answers here; the loop takes them per round
  DeliveryMachine machine;
  std::unique_ptr<RateLimiter> rates = std::make_unique<LocalRateLimiter>();  ///< per provider
  Scheduler scheduler;
  std::unordered_map<Id, Delivery> active;
  std::unordered_map<std::string, ProviderSlot> providers;  ///< never changes after start
  std::size_t outstanding = 0;
  std::size_t max_outstanding = 0;
  bool pump_posted = false;
  WriteBatch pending_writes;  ///< collected during one loop step, submitted at its end
  LoopTimer schedule_timer;   ///< the scheduler's next due time
  LoopTimer rate_timer;       ///< a rate-limited or token-less provider may go on
  LoopTimer reconcile_timer;
  LoopTimer housekeeping_timer;
  /// Routed events waiting to ride with their delivery's next write (usually "sending" a few ms
  /// later), so both go in one row of the events table (event_rows.hpp): held_events.cpp.
  std::deque<std::pair<Id, std::int64_t>> held_since;  ///< (id, when held, ms), oldest first
  LoopTimer held_timer;  ///< no routed event waits longer than held_event_ms
  std::unordered_map<std::string, Suppression> suppressed;  ///< by suppression_key
  std::unordered_map<Id, ReceiptState> recent_receipts;     ///< receipts recorded, maybe not yet committed
  std::unordered_map<Id, int> reconcile_checks;             ///< lookups made per delivery awaiting a receipt
  std::unordered_map<Id, std::int64_t> reconcile_next_ms;
  std::unordered_set<Id> reconciling;                       ///< lookups in flight
  /// Steps that ended while their parent had not been routed yet (after a restart): the parent
  /// reads them when it resumes, since their final rows may not be committed by then.
  std::unordered_map<Id, std::vector<StepRecord>> early_step_ends;
  Metrics metrics{clock};  ///< `clock` is set before: it is declared earlier
  std::thread loop_thread;

  // ---- receipts ----
  std::string public_url;  ///< receipts base ("" = no receipt server)
  std::unique_ptr<http::Server> receipt_server;
  std::atomic<bool> receipts_ready{false};  ///< public_url is set: the receipt thread may read it
  std::mutex tally_mutex;                   ///< receipt threads count refusals, the loop writes them
  RejectionTally rejections;

  std::unique_ptr<Retention> retention;
  std::atomic<bool> closing{false};
  std::once_flag close_once;

  Impl(EngineOptions opts, std::shared_ptr<Router> r);
  ~Impl();

  // engine.cpp
  void log(LogLevel level, const std::string& message, const LogFields& fields) const;
  void close();
  template <class F>
  auto on_loop(F&& f) -> decltype(f());

  // recovery.cpp
  void recover();

  // intake.cpp
  /// With `give_back`: when the intake journal does not take the row, nothing is accepted, the
  /// row is moved there and the result is empty (send_if_quick).
  std::vector<SendResult> intake(std::vector<Notification> batch, bool many, Notification* give_back = nullptr);

  // dispatcher.cpp
  void admit(std::vector<Notification> batch);
  void post_pump();
  void pump();
  void flush_writes();
  // held_events.cpp
  static constexpr std::int64_t held_event_ms = 250;
  void hold_routed(Delivery& x, Event&& e);
  void write_held(bool all);                   ///< those held held_event_ms or longer (or all)
  void hold_mark(Delivery& x, SendingMark m, std::uint64_t ticket);
  /// The held mark's events (and its state unless `superseded`) into `into`, which settles it.
  void release_mark(Delivery& x, bool superseded, WriteBatch& into);
  /// The held "routed" event into `into`.
  void release_event(Delivery& x, WriteBatch& into);
  /// What was held goes back here once written, for the next delivery to hold: a few hundred
  /// are held at once, and a fresh allocation of these sizes missed malloc's per-thread cache.
  std::vector<std::unique_ptr<Event>> spare_events;
  std::vector<std::unique_ptr<Delivery::HeldMark>> spare_marks;
  void note_held(Id id);  ///< starts the held_event_ms clock for what `id` holds
  /// Records an attempt's "sending" step as a mark of `sends` (held_events.cpp).
  void record_sending(Delivery& x, Step& s, Sends& sends);
  void apply(Delivery& x, Step& s, bool was_outstanding, WriteBatch& into);
  // cascade_shell.cpp: plans with many steps
  void coordinate(Delivery& parent, const Step& s, WriteBatch& into);
  void start_step(Delivery& parent, std::size_t k, WriteBatch& into);
  void resume_cascade(Delivery& parent, WriteBatch& into);
  void step_ended(Id parent, const StepRecord& r, WriteBatch& into);
  void step_receipt(Id parent, int step, ReceiptState receipt, WriteBatch& into);
  void acknowledge(Id id, const std::string& channel);
  bool cancel_steps(Delivery& parent);
  /// The provider at the head of x's chain cannot serve it (channel, address): why, or "".
  std::string unservable(const ProviderSlot& p, const Delivery& x) const;
  void route(std::vector<Delivery*>& batch);
  void enqueue_for_provider(Delivery& x, WriteBatch& into);
  void dispatch(std::int64_t now);
  void start_one(Delivery& x, ProviderSlot& p, std::int64_t now, const std::string& address, WriteBatch& marks, Sends& sends);
  void start_batch(Delivery& first, ProviderSlot& p, std::int64_t now, std::string first_text,
                   const std::string& first_address, Sends& sends);
  bool take_rate_token(ProviderSlot& p, std::int64_t now);
  void request_token_if_due(ProviderSlot& p, std::int64_t now);
  std::string address_if_needed(const ProviderSlot& p, const Delivery& x) const;
  const Suppression* suppression_of(const std::string& channel, const std::string& address) const;
  void add_suppression(const SuppressionRequest& what, Id id);
  std::string receipt_url(const ProviderSlot& p, Id id) const;
  /// The adapter could not build the request: logged, and the notification dead-lettered.
  void unbuildable(Delivery& x, ProviderSlot& p, const std::exception& ex);
  /// One provider answer about one notification, handed to the machine.
  void answered(Delivery& x, ProviderSlot& p, const Outcome& out, const http::Response& resp, std::int64_t now);
  void on_response(ProviderSlot& p, Id id, http::Response resp);
  void on_batch_response(ProviderSlot& p, const std::vector<Id>& members, http::Response resp);
  void on_in_doubt_lookup(ProviderSlot& p, Id id, const std::string& text, http::Response resp);
  void arm_schedule_timer();

  // provider_health.cpp
  /// Moves the provider's circuit on in time; false while it is open, after sending every
  /// notification waiting for it on to the next provider of its chain (or back to wait).
  bool circuit_lets_through(ProviderSlot& p, std::int64_t now);
  /// An attempt's (or a status query's) answer, for the circuit and the p99.
  void record_outcome(ProviderSlot& p, bool provider_worked, const http::Response& resp, std::int64_t now);
  void circuit_moved(ProviderSlot& p, const CircuitTransition& t, std::int64_t now);
  /// The router's answers for a batch, with the providers' health for the rules to read.
  std::vector<RouteResult> route_rules(const std::vector<const Notification*>& batch);

  // receipt_intake.cpp
  void start_receipt_server();
  void on_receipt(http::ServerRequest req, http::Respond respond);
  bool apply_receipt(ProviderSlot& p, const Receipt& r, bool from_lookup, const StoredNotification* row);
  void reject_receipt(const std::string& provider, int status, const std::string& reason, const std::string& remote);
  void log_rejections();
  void arm_housekeeping();

  // reconciler.cpp
  void arm_reconcile();
  void reconcile_sweep();
  void on_reconcile_lookup(ProviderSlot& p, const StoredNotification& row, const http::Response& resp);

  // control.cpp
  void require_writable(const char* what) const;
  /// Before a call that reads or changes loop state: journaled send()s get to the loop first.
  void settle_intake();
  bool cancel(Id id);
  void retry(Id id);
  bool unsuppress(const std::string& channel, const std::string& address);
  bool wait_idle(std::chrono::milliseconds timeout);
  void flush();
};

/// Runs `f` on the loop and waits for its result. Throws EngineClosed when the loop has stopped.
template <class F>
auto Engine::Impl::on_loop(F&& f) -> decltype(f()) {
  settle_intake();  // read your writes: what send() accepted is on the loop before `f` runs
  auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::forward<F>(f));
  auto future = task->get_future();
  asio::post(io, [task] { (*task)(); });
  // close() may stop the loop after a caller's check: then the task never runs.
  while (future.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    if (io.stopped()) throw EngineClosed("engine is closed");
  }
  return future.get();
}

}  // namespace herald
