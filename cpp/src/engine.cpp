#include "herald/thread_name.hpp"
#include "herald/engine.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "herald/clock.hpp"
#include "herald/errors.hpp"
#include "herald/http_client.hpp"
#include "herald/log.hpp"
#include "herald/metrics.hpp"
#include "herald/http_server.hpp"
#include "herald/receipts.hpp"
#include "herald/rejection_tally.hpp"

namespace herald {

namespace asio = boost::asio;

namespace {

/// Key of the intake idempotency index.
struct IdemKey {
  std::string tenant, type, recipient_id, key;
  bool operator==(const IdemKey&) const = default;
};
struct IdemKeyHash {
  std::size_t operator()(const IdemKey& k) const noexcept {
    std::hash<std::string> h;
    return h(k.tenant) ^ (h(k.type) * 3) ^ (h(k.recipient_id) * 7) ^ (h(k.key) * 13);
  }
};
struct IdemEntry {
  Id id;
  std::uint64_t hash;
};

struct Provider {
  ProviderConfig config;
  std::unique_ptr<Adapter> adapter;
  int max_attempts = 3;
  int in_flight = 0;  ///< requests in flight (a batch counts once)
  std::array<std::deque<Id>, priority_count> waiting;  ///< routed, waiting for a slot, by lane
  bool has_lookup = false;     ///< the adapter can ask the provider about a message
  double rate_tokens = 0;      ///< token bucket for rate_per_s
  std::int64_t rate_at_ms = 0;

  [[nodiscard]] bool has_waiting() const {
    return std::any_of(waiting.begin(), waiting.end(), [](const auto& q) { return !q.empty(); });
  }
  /// Takes the next waiting id, most urgent lane first; 0 when none.
  Id pop_waiting() {
    for (auto& q : waiting) {
      if (!q.empty()) {
        const Id id = q.front();
        q.pop_front();
        return id;
      }
    }
    return 0;
  }
  [[nodiscard]] Id peek_waiting() const {
    for (const auto& q : waiting) {
      if (!q.empty()) return q.front();
    }
    return 0;
  }
};

/// A notification the engine is working on. Lives on the loop thread only.
struct Active {
  Notification n;
  DeliveryState d;
  Plan plan;
  bool routed = false;
  bool outstanding = false;      ///< popped from the scheduler and not yet finished or deferred
  bool in_flight = false;        ///< an attempt is marked "sending" and unanswered
  bool resend_in_doubt = false;  ///< the next attempt repeats one whose outcome a crash lost
  bool lookup_done = false;      ///< the provider was asked about the attempt in doubt (or cannot be)
  bool no_batch = false;         ///< its batch was refused (or could not be built): send it alone
  int lookups_failed = 0;        ///< status queries about the attempt in doubt that got no answer
  ErrorClass failure = ErrorClass::none;  ///< class of the last failed attempt (for the final event)
  std::int64_t attempt_started_ms = 0;  ///< when the attempt in doubt was marked "sending"
  Provider* provider = nullptr;  ///< provider of the attempt in flight
};

std::string suppression_key(const std::string& channel, const std::string& address) {
  return channel + '\n' + address;
}

/// An event about notification `n`, copying what the JSON Lines log carries without a join.
Event make_event(const Notification& n, int attempt, std::string kind) {
  Event e;
  e.notification_id = n.id;
  e.kind = std::move(kind);
  e.attempt = attempt;
  e.type = n.type;
  e.tenant = n.tenant;
  e.priority = n.priority;
  e.recipient_id = n.recipient_id;
  return e;
}

Event make_event(const Active& a, const char* kind) {
  Event e = make_event(a.n, a.d.attempt, kind);
  e.channel = a.plan.channel;
  return e;
}

}  // namespace

struct Engine::Impl {
  EngineOptions options;
  std::shared_ptr<Router> router;
  std::unique_ptr<Store> store;
  std::unique_ptr<http::Client> http;
  IdGenerator ids;

  // Intake idempotency index: the keys of the last one or two minutes (two generations, the older
  // dropped whole when the newer is a minute old, so trimming never walks the map); older keys are
  // found in the store.
  using IdemMap = std::unordered_map<IdemKey, IdemEntry, IdemKeyHash>;
  std::mutex idem_mutex;
  IdemMap idem, idem_previous;
  std::int64_t idem_rotated_ms = now_ms();

  // Loop thread state.
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  asio::steady_timer timer{io};
  std::int64_t timer_due_ms = 0;  ///< 0 = not armed
  bool pump_posted = false;
  Scheduler scheduler;
  std::unordered_map<Id, Active> active;
  std::unordered_map<std::string, Provider> providers;
  std::size_t outstanding = 0;
  std::size_t max_outstanding = 0;
  std::mt19937_64 rng;
  WriteBatch pending_writes;  ///< collected during one loop step, submitted at its end
  std::thread loop_thread;
  asio::steady_timer rate_timer{io};  ///< wakes the loop when a rate-limited or token-less provider may go on
  std::int64_t rate_timer_due_ms = 0;
  asio::steady_timer reconcile_timer{io};
  std::unordered_map<std::string, Suppression> suppressed;  ///< by suppression_key; loop thread only
  std::unordered_map<Id, std::string> recent_receipts;      ///< receipts recorded, maybe not yet committed
  std::unordered_map<Id, int> reconcile_checks;             ///< lookups made per delivery awaiting a receipt
  std::unordered_map<Id, std::int64_t> reconcile_next_ms;
  std::unordered_set<Id> reconciling;                       ///< lookups in flight
  std::string public_url;                                   ///< receipts base ("" = no receipt server)
  std::unique_ptr<http::Server> receipt_server;
  std::atomic<bool> receipts_ready{false};  ///< public_url is set: the receipt thread may read it
  std::mutex tally_mutex;                   ///< receipt threads count refusals, the loop writes them
  RejectionTally rejections;
  asio::steady_timer housekeeping_timer{io};
  std::unique_ptr<Retention> retention;

  // Counters read from any thread.
  std::atomic<std::uint64_t> c_received{0}, c_dedup{0}, c_attempts{0}, c_accepted{0}, c_retries{0},
      c_failovers{0}, c_expired{0}, c_dead{0}, c_cancelled{0}, c_in_doubt{0}, c_recovered{0}, c_suppressed{0},
      c_receipts{0}, c_receipts_rejected{0}, c_lookups{0}, c_reconciled{0}, c_batched{0}, c_pruned{0};
  std::atomic<std::int64_t> active_count{0};  ///< accepted, not final (includes not yet admitted)
  Metrics metrics;  ///< loop thread only: recorded and rendered there
  std::atomic<std::int64_t> in_flight_count{0};
  std::atomic<bool> closing{false};
  std::once_flag close_once;

  Impl(EngineOptions opts, std::shared_ptr<Router> r)
      : options(std::move(opts)), router(std::move(r)), scheduler(options.weights) {
    if (!router) throw ConfigError("router: is required");
    for (const auto& c : options.providers) {
      auto adapter = make_adapter(c);  // validates
      if (providers.count(c.name) != 0) throw ConfigError("providers." + c.name + ": defined twice");
      Provider p;
      p.config = c;
      p.adapter = std::move(adapter);
      p.max_attempts = c.max_attempts > 0 ? c.max_attempts : options.retry.max_attempts_per_provider;
      max_outstanding += static_cast<std::size_t>(c.concurrency);
      providers.emplace(c.name, std::move(p));
    }
    if (options.route_batch == 0) throw ConfigError("route_batch: must be at least 1");
    if (options.retry.max_attempts_per_provider < 1) {
      throw ConfigError("retry.max_attempts_per_provider: must be at least 1");
    }
    max_outstanding += options.route_batch;
    rng.seed(options.seed != 0 ? options.seed : static_cast<std::uint64_t>(now_us()));
    StoreOptions so;
    so.durability = options.durability;
    so.log_segment_bytes = options.log_segment_bytes;
    so.retry_max = options.store_retry_max;
    so.on_health_change = [this](const StoreHealth& h) {
      if (h.degraded) {
        log(LogLevel::error, "the store refuses writes: records are held in memory and delivery waits",
            {{"error", h.error}, {"held_batches", std::to_string(h.held_batches)}});
      } else {
        log(LogLevel::warning, "the store takes writes again: held records committed",
            {{"write_faults", std::to_string(h.write_faults)}});
      }
    };
    store = std::make_unique<Store>(options.data_dir, so);
    ids.raise_floor(store->max_id());
    http::Client::Options http_options;
    http = std::make_unique<http::Client>(http_options);
    for (auto& [name, p] : providers) p.has_lookup = probe_lookup(*p.adapter);
    for (auto& x : store->suppressions()) {
      std::string key = suppression_key(x.channel, x.address);
      suppressed.emplace(std::move(key), std::move(x));
    }
    recover();
    start_receipt_server();
    {
      std::string names;
      for (const auto& c : options.providers) names += (names.empty() ? "" : ",") + c.name;
      log(LogLevel::info, "engine started",
          {{"data_dir", options.data_dir.string()}, {"providers", names}, {"resumed", std::to_string(c_recovered.load())},
           {"in_doubt", std::to_string(c_in_doubt.load())}, {"receipts_url", public_url}});
    }
    loop_thread = std::thread([this] {
      detail::name_this_thread("herald-loop");
      io.run();
    });
    post_pump();
    asio::post(io, [this] {
      arm_reconcile();
      arm_housekeeping();
    });
    retention = std::make_unique<Retention>(*store, store->log_dir(), options.retention, [this](const PruneReport& pass) {
      c_pruned.fetch_add(pass.store.notifications, std::memory_order_relaxed);
    });
  }

  void log(LogLevel level, const std::string& message, const LogFields& fields) const {
    if (!options.log) return;
    try {
      options.log(level, message, fields);
    } catch (...) {
      // a sink that fails must not take the engine with it
    }
  }

  /// Whether the adapter has a status API: asks it to build a lookup for a made-up message id.
  static bool probe_lookup(const Adapter& adapter) {
    Notification n;
    n.recipient_json = R"({"phone":"+15550000000","email":"probe@example.com"})";
    const std::string text, message_id = "probe";
    try {
      return adapter.build_lookup(LookupContext{n, text, message_id, 0}).has_value();
    } catch (const std::exception&) {
      return false;
    }
  }

  void start_receipt_server() {
    if (options.receipts_listen.empty()) return;
    const auto colon = options.receipts_listen.rfind(':');
    if (colon == std::string::npos) throw ConfigError("receipts: must be \"host:port\"");
    http::ServerOptions so;
    so.host = options.receipts_listen.substr(0, colon);
    try {
      const int port = std::stoi(options.receipts_listen.substr(colon + 1));
      if (port < 0 || port > 65535) throw std::out_of_range("port");
      so.port = static_cast<std::uint16_t>(port);
    } catch (const std::exception&) {
      throw ConfigError("receipts: port must be a number 0..65535");
    }
    so.thread_name = "herald-receipts";
    so.max_body_bytes = 4 << 20;
    receipt_server = std::make_unique<http::Server>(so, [this](http::ServerRequest&& req, http::Respond respond) {
      on_receipt(std::move(req), std::move(respond));
    });
    public_url = options.public_url.empty() ? receipt_server->url() : options.public_url;
    while (!public_url.empty() && public_url.back() == '/') public_url.pop_back();
    receipts_ready.store(true, std::memory_order_release);
  }

  ~Impl() { close(); }

  // ---- start-up -----------------------------------------------------------

  void recover() {
    auto rows = store->load_unfinished();
    WriteBatch batch;
    for (auto& row : rows) {
      Active a;
      a.n = std::move(row.notification);
      a.d = row.delivery;
      if (a.d.state == State::sending) {
        // The attempt went out (or was about to) and its answer was never recorded.
        a.d.in_doubt = true;
        a.resend_in_doubt = true;
        a.attempt_started_ms = row.updated_at_ms;
        c_in_doubt.fetch_add(1, std::memory_order_relaxed);
        Event e = make_event(a, "in_doubt");
        e.provider = a.d.provider;
        e.detail = "outcome of attempt " + std::to_string(a.d.attempt) +
                   " unknown after a restart; asking the provider where it can answer, else resending once";
        batch.events.push_back(std::move(e));
        a.d.state = State::queued;
        batch.updates.push_back({a.n.id, a.d});
      }
      std::int64_t ready = a.n.send_at_ms;
      if (a.d.state == State::retry_scheduled) ready = std::max(ready, a.d.next_at_ms);
      scheduler.add(a.n.id, a.n.priority, ready, a.n.ordering_key);
      active.emplace(a.n.id, std::move(a));
      active_count.fetch_add(1, std::memory_order_relaxed);
      c_recovered.fetch_add(1, std::memory_order_relaxed);
    }
    // Held, not awaited: on a full disk the engine still opens and resumes; these wait for space.
    if (!batch.empty()) store->submit(std::move(batch));
  }

  // ---- intake (caller threads) ---------------------------------------------

  /// Fills id and created_at, checks the idempotency index. Returns the earlier notification for a
  /// repeat. Called with idem_mutex held.
  std::optional<SendResult> check_idempotency(Notification& n, std::uint64_t hash, const std::string& where) {
    if (n.idempotency_key.empty()) return std::nullopt;
    IdemKey key{n.tenant, n.type, n.recipient_id, n.idempotency_key};
    auto it = idem.find(key);
    if (it == idem.end()) {
      if (auto old = idem_previous.find(key); old != idem_previous.end()) {
        it = idem.emplace(std::move(key), old->second).first;
      } else if (auto hit = store->find_idempotent(n.tenant, n.type, n.recipient_id, n.idempotency_key)) {
        it = idem.emplace(std::move(key), IdemEntry{hit->id, hit->content_hash}).first;
      }
    }
    if (it != idem.end()) {
      if (it->second.hash != hash) {
        throw IdempotencyConflict(where + "idempotency_key: '" + n.idempotency_key + "' was already used for notification " +
                                  std::to_string(it->second.id) + " with different content");
      }
      return SendResult{it->second.id, State::queued, true};
    }
    return std::nullopt;
  }

  std::vector<SendResult> intake(std::vector<Notification> batch, bool many) {
    if (closing.load()) throw EngineClosed("engine is closed");
    const std::int64_t now = now_ms();
    for (std::size_t i = 0; i < batch.size(); ++i) {
      validate(batch[i], now, many ? "notifications[" + std::to_string(i) + "]." : std::string());
    }
    std::vector<SendResult> results(batch.size());
    std::vector<Notification> fresh;
    fresh.reserve(batch.size());
    std::vector<IdemKey> reserved;  // keys this call added, removed again if the commit fails
    std::vector<std::size_t> duplicates;
    IdemMap dropped;  // freed after the lock is released
    {
      std::lock_guard lock(idem_mutex);
      if (now - idem_rotated_ms >= 60'000) {
        dropped.swap(idem_previous);
        idem_previous.swap(idem);
        idem_rotated_ms = now;
      }
      // First pass: find conflicts before changing anything, so a rejected batch leaves no trace.
      std::unordered_map<IdemKey, std::pair<std::uint64_t, std::size_t>, IdemKeyHash> in_batch;
      std::vector<std::optional<SendResult>> repeats(batch.size());
      std::vector<std::uint64_t> hashes(batch.size());
      for (std::size_t i = 0; i < batch.size(); ++i) {
        Notification& n = batch[i];
        hashes[i] = n.idempotency_key.empty() ? 0 : content_hash(n);
        const std::string where = many ? "notifications[" + std::to_string(i) + "]." : std::string();
        repeats[i] = check_idempotency(n, hashes[i], where);
        if (!repeats[i] && !n.idempotency_key.empty()) {
          IdemKey key{n.tenant, n.type, n.recipient_id, n.idempotency_key};
          auto [it, first] = in_batch.try_emplace(key, hashes[i], i);
          if (!first && it->second.first != hashes[i]) {
            throw IdempotencyConflict(where + "idempotency_key: '" + n.idempotency_key +
                                      "' repeats notifications[" + std::to_string(it->second.second) +
                                      "] with different content");
          }
        }
      }
      for (std::size_t i = 0; i < batch.size(); ++i) {
        Notification& n = batch[i];
        if (repeats[i]) {
          results[i] = *repeats[i];
          duplicates.push_back(i);
          continue;
        }
        if (!n.idempotency_key.empty()) {
          IdemKey key{n.tenant, n.type, n.recipient_id, n.idempotency_key};
          auto it = idem.find(key);
          if (it != idem.end()) {  // an earlier item of this same batch
            results[i] = SendResult{it->second.id, State::queued, true};
            duplicates.push_back(i);
            continue;
          }
          n.id = ids.next();
          idem.emplace(key, IdemEntry{n.id, hashes[i]});
          reserved.push_back(std::move(key));
        } else {
          n.id = ids.next();
        }
        n.created_at_ms = now;
        results[i] = SendResult{n.id, State::queued, false};
        fresh.push_back(std::move(n));  // batch[i] is read again only for duplicates
      }
    }
    if (!fresh.empty()) {
      const auto count = static_cast<std::int64_t>(fresh.size());
      active_count.fetch_add(count);
      WriteBatch wb;
      wb.inserts = std::move(fresh);
      std::promise<void> durable;
      auto future = durable.get_future();
      try {
        // Why admit from the writer thread: the notification is durable from here on, and the loop
        // can start on it while the caller is still being woken. The rows move on without a copy.
        // OnFault::fail: on a full disk the caller hears it at once and nothing is accepted.
        store->submit(
            std::move(wb),
            [this, &durable](std::exception_ptr err, WriteBatch& done) {
              if (!err) {
                asio::post(io, [this, rows = std::move(done.inserts)]() mutable { admit(std::move(rows)); });
                durable.set_value();
              } else {
                durable.set_exception(err);
              }
            },
            OnFault::fail);
        future.get();
      } catch (...) {
        active_count.fetch_sub(count);
        std::lock_guard lock(idem_mutex);
        for (const auto& key : reserved) {
          idem.erase(key);
          idem_previous.erase(key);
        }
        throw;
      }
      c_received.fetch_add(static_cast<std::uint64_t>(count), std::memory_order_relaxed);
    }
    if (!duplicates.empty()) {
      c_dedup.fetch_add(duplicates.size(), std::memory_order_relaxed);
      WriteBatch wb;
      for (std::size_t i : duplicates) {
        if (auto row = store->get(results[i].id)) results[i].state = row->delivery.state;
        Event e = make_event(batch[i], 0, "deduplicated");
        e.notification_id = results[i].id;  // the stored notification's, not the repeat's
        e.detail = "repeat of idempotency_key '" + batch[i].idempotency_key + "'";
        wb.events.push_back(std::move(e));
      }
      store->submit(std::move(wb));
    }
    return results;
  }

  // ---- loop thread ----------------------------------------------------------

  void admit(std::vector<Notification> batch) {
    const std::int64_t now = now_ms();
    for (auto& n : batch) {
      const Id id = n.id;
      const Priority pri = n.priority;
      const std::int64_t ready = n.send_at_ms > now ? n.send_at_ms : 0;
      Active a;
      a.n = std::move(n);
      auto [it, inserted] = active.emplace(id, std::move(a));
      if (!inserted) {
        active_count.fetch_sub(1);  // already known (a retry raced with intake): counted once
        continue;
      }
      scheduler.add(id, pri, ready, it->second.n.ordering_key);
    }
    pump();
  }

  void post_pump() {
    if (pump_posted) return;
    pump_posted = true;
    asio::post(io, [this] {
      pump_posted = false;
      pump();
    });
  }

  void flush_writes() {
    if (pending_writes.empty()) return;
    store->submit(std::move(pending_writes));
    pending_writes = WriteBatch{};
  }

  void record(Active& a, Event e, bool with_state) {
    pending_writes.events.push_back(std::move(e));
    if (with_state) pending_writes.updates.push_back({a.n.id, a.d});
  }

  /// Moves a notification to a final state and forgets it.
  void finish(Active& a, State state, const char* kind, std::string detail) {
    a.d.state = state;
    if (state != State::completed) a.d.last_error = detail;
    metrics.final_state(a.n.type, a.n.priority, state);
    Event e = make_event(a, kind);
    e.provider = a.d.provider;
    e.detail = std::move(detail);
    switch (state) {
      case State::expired: e.error_class = ErrorClass::expired; break;
      case State::cancelled: e.error_class = ErrorClass::cancelled; break;
      case State::suppressed:
        e.error_class = a.failure == ErrorClass::opted_out ? ErrorClass::opted_out : ErrorClass::suppressed;
        break;
      case State::dead_lettered: e.error_class = a.failure == ErrorClass::none ? ErrorClass::no_provider : a.failure; break;
      default: break;
    }
    record(a, std::move(e), true);
    if (a.outstanding) --outstanding;
    const Id id = a.n.id;
    scheduler.finish(id);
    active.erase(id);  // `a` is gone from here on
    active_count.fetch_sub(1);
  }

  bool expired(const Active& a, std::int64_t now) const {
    return a.n.expires_at_ms != 0 && now >= a.n.expires_at_ms;
  }

  void expire(Active& a) {
    c_expired.fetch_add(1, std::memory_order_relaxed);
    finish(a, State::expired, "expired", "expires_at passed before it could be sent");
  }

  void dead_letter(Active& a, std::string reason) {
    c_dead.fetch_add(1, std::memory_order_relaxed);
    finish(a, State::dead_lettered, "dead_lettered", std::move(reason));
  }

  void enqueue_for_provider(Active& a) {
    const auto& name = a.plan.providers[static_cast<std::size_t>(a.d.provider_index)];
    Provider& p = providers.at(name);  // checked when the plan was accepted
    p.waiting[static_cast<int>(a.n.priority)].push_back(a.n.id);
  }

  /// Checks a rule's plan against the configuration; empty string when usable.
  std::string plan_problem(const Plan& plan) const {
    if (plan.channel.empty()) return "plan.channel: is empty";
    if (plan.providers.empty()) return "plan.providers: is empty";
    for (const auto& name : plan.providers) {
      if (providers.count(name) == 0) return "plan.providers: unknown provider '" + name + "'";
    }
    return {};
  }

  void route(std::vector<Active*>& batch) {
    std::vector<const Notification*> view;
    view.reserve(batch.size());
    for (Active* a : batch) view.push_back(&a->n);
    std::vector<RouteResult> results;
    try {
      results = router->route(view);
      if (results.size() != batch.size()) throw Error("router returned the wrong number of plans");
    } catch (const std::exception& ex) {
      results.assign(batch.size(), RouteResult{false, {}, std::string("routing failed: ") + ex.what()});
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Active& a = *batch[i];
      RouteResult& r = results[i];
      std::string problem = r.ok ? plan_problem(r.plan) : r.error;
      if (!problem.empty()) {
        a.failure = ErrorClass::routing_error;
        dead_letter(a, std::move(problem));
        continue;
      }
      a.plan = std::move(r.plan);
      a.routed = true;
      if (a.d.provider_index >= static_cast<int>(a.plan.providers.size())) {
        a.d.provider_index = 0;  // the rules changed since a restart: start the chain again
        a.d.provider_attempt = 0;
      }
      Event e = make_event(a, "routed");
      e.detail = a.plan.channel + " via ";
      for (std::size_t k = 0; k < a.plan.providers.size(); ++k) {
        e.detail += (k ? "," : "") + a.plan.providers[k];
      }
      record(a, std::move(e), false);
      enqueue_for_provider(a);
    }
  }

  void pump() {
    if (closing.load(std::memory_order_relaxed)) {
      flush_writes();
      return;
    }
    const std::int64_t now = now_ms();
    // 1. Take ready notifications while there is room downstream.
    const std::size_t room = max_outstanding > outstanding ? max_outstanding - outstanding : 0;
    std::size_t want = std::min(room, options.route_batch);
    if (want == 0) {
      // A full window must not hold back critical work: pop_ready serves the critical lane first,
      // so asking for no more than its length takes critical notifications only.
      want = std::min(scheduler.lane_size(Priority::critical), options.route_batch);
    }
    bool more_ready = false;
    if (want > 0) {
      auto ids_ready = scheduler.pop_ready(now, want);
      more_ready = ids_ready.size() == want;
      std::vector<Active*> to_route;
      for (Id id : ids_ready) {
        auto it = active.find(id);
        if (it == active.end()) continue;
        Active& a = it->second;
        a.outstanding = true;
        ++outstanding;
        if (expired(a, now)) {
          expire(a);
        } else if (!a.routed) {
          to_route.push_back(&a);
        } else {
          enqueue_for_provider(a);
        }
      }
      if (!to_route.empty()) route(to_route);
    }
    // 2. Start attempts where providers have free slots.
    dispatch(now);
    flush_writes();
    if (more_ready) post_pump();
    arm_timer(now);
  }

  // ---- provider I/O --------------------------------------------------------------

  /// The requests of one dispatch step; they leave once their "sending" marks commit. Each keeps
  /// the earliest expires_at of its notifications (0 = none): when the commit waited past it (the
  /// disk refused writes meanwhile), the request is not sent and the notification expires.
  struct Sends {
    std::vector<std::pair<http::Request, http::Callback>> requests;
    std::vector<std::int64_t> expires_at_ms;
    void add(http::Request req, http::Callback cb, std::int64_t expires = 0) {
      requests.emplace_back(std::move(req), std::move(cb));
      expires_at_ms.push_back(expires);
    }
    [[nodiscard]] bool empty() const { return requests.empty(); }
  };

  /// Takes one send from the provider's token bucket; false (and a wake-up armed) when empty.
  bool take_rate_token(Provider& p, std::int64_t now) {
    const double rate = p.config.rate_per_s;
    if (rate <= 0) return true;
    const double burst = std::max(1.0, rate);  // one second's worth
    if (p.rate_at_ms == 0) p.rate_tokens = burst;
    p.rate_tokens = std::min(burst, p.rate_tokens + static_cast<double>(now - p.rate_at_ms) * rate / 1000.0);
    p.rate_at_ms = now;
    if (p.rate_tokens >= 1.0) {
      p.rate_tokens -= 1.0;
      return true;
    }
    wake_at(now + static_cast<std::int64_t>(std::ceil((1.0 - p.rate_tokens) * 1000.0 / rate)), now);
    return false;
  }

  /// Arms the rate timer to pump the loop at `due` unless it already wakes earlier.
  void wake_at(std::int64_t due, std::int64_t now) {
    if (rate_timer_due_ms != 0 && rate_timer_due_ms <= due) return;
    rate_timer_due_ms = due;
    rate_timer.expires_after(std::chrono::milliseconds(std::max<std::int64_t>(0, due - now)));
    rate_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      rate_timer_due_ms = 0;
      pump();
    });
  }

  /// Asks for an access token when the adapter wants one (FCM's OAuth2). Not recorded: no notification's.
  void request_token_if_due(Provider& p, std::int64_t now) {
    auto req = p.adapter->token_request(now);
    if (!req) return;
    Provider* pp = &p;  // providers never change after start: the pointer stays valid
    http->submit(std::move(*req), [this, pp](http::Response&& resp) {
      asio::post(io, [this, pp, r = std::move(resp)] {
        pp->adapter->on_token_response(r, now_ms());
        post_pump();
      });
    });
  }

  const Suppression* suppression_of(const std::string& channel, const std::string& address) const {
    auto it = suppressed.find(suppression_key(channel, address));
    return it == suppressed.end() ? nullptr : &it->second;
  }

  void add_suppression(const std::string& channel, const std::string& address, const std::string& reason,
                       const std::string& detail, const std::string& provider, Id id) {
    if (address.empty()) return;
    Suppression x;
    x.channel = channel;
    x.address = address;
    x.reason = reason;
    x.detail = detail;
    x.provider = provider;
    x.notification_id = id;
    x.at_ms = now_ms();
    metrics.suppression(channel, reason);
    pending_writes.suppressions.push_back(x);
    suppressed[suppression_key(channel, address)] = std::move(x);
  }

  /// Whether `b` may ride in the same batch request as `a`.
  static bool batch_compatible(const Active& a, const Active& b) {
    return b.plan.batch && !b.no_batch && !b.resend_in_doubt && b.plan.channel == a.plan.channel &&
           b.plan.template_text == a.plan.template_text;
  }

  /// Marks one attempt "sending" (recorded in `marks`, committed before the request leaves).
  void mark_sending(Active& a, Provider& p, const std::string& address, WriteBatch& marks, std::string detail) {
    ++a.d.attempt;
    ++a.d.provider_attempt;
    a.d.state = State::sending;
    a.d.provider = p.config.name;
    a.d.provider_message_id.clear();
    a.d.channel = a.plan.channel;
    a.d.address = address;
    Event e = make_event(a, "sending");
    e.provider = p.config.name;
    if (a.resend_in_doubt) detail = detail.empty() ? "resend of an attempt in doubt" : detail + "; resend of an attempt in doubt";
    e.detail = std::move(detail);
    a.resend_in_doubt = false;
    a.in_flight = true;
    a.provider = &p;
    in_flight_count.fetch_add(1);
    c_attempts.fetch_add(1, std::memory_order_relaxed);
    marks.events.push_back(std::move(e));
    marks.updates.push_back({a.n.id, a.d});
  }

  std::string receipt_url(const Provider& p, Id id) const {
    if (public_url.empty() || !p.adapter->has_receipts()) return {};
    return public_url + "/receipts/" + p.config.name + "?hid=" + std::to_string(id);
  }

  /// Builds the request; an adapter that cannot (a bug, or data it cannot express) dead-letters
  /// the notification instead of stopping the loop. False when `a` is finished.
  bool build_or_dead_letter(Active& a, Provider& p, const SendContext& ctx, http::Request& out) {
    try {
      out = p.adapter->build(ctx);
      return true;
    } catch (const std::exception& ex) {
      a.failure = ErrorClass::template_error;
      log(LogLevel::error, "a provider adapter could not build a request: the notification is dead-lettered",
          {{"provider", p.config.name}, {"notification_id", std::to_string(a.n.id)}, {"error", ex.what()}});
      dead_letter(a, p.config.name + " could not build the request: " + ex.what());
      return false;
    }
  }

  /// The recipient's address for this attempt, read only when something will use it: a
  /// suppression to check, or receipts that may make it unusable later (it costs a JSON parse).
  std::string address_if_needed(const Provider& p, const Active& a) const {
    if (suppressed.empty() && !p.adapter->has_receipts()) return {};
    return p.adapter->address_for(a.n, a.plan.channel);
  }

  /// Starts the next request of provider `p` for notification `a`: a status query about an
  /// attempt in doubt, a batch, or a single attempt.
  void start_one(Active& a, Provider& p, std::int64_t now, const std::string& address, WriteBatch& marks,
                 Sends& sends) {
    const Id nid = a.n.id;
    std::string text = render_template(a.plan.template_text, a.n.data_json);
    if (a.resend_in_doubt && !a.lookup_done && p.has_lookup && p.config.name == a.d.provider) {
      const std::string no_id;
      auto req = p.adapter->build_lookup(LookupContext{a.n, text, no_id, a.attempt_started_ms});
      if (req) {
        a.in_flight = true;
        a.provider = &p;
        ++p.in_flight;
        in_flight_count.fetch_add(1);
        c_lookups.fetch_add(1, std::memory_order_relaxed);
        Event e = make_event(a, "lookup");
        e.provider = p.config.name;
        e.detail = "asking whether the attempt in doubt arrived, before any resend";
        marks.events.push_back(std::move(e));
        Provider* pp = &p;
        sends.add(std::move(*req), [this, pp, nid, t = std::move(text)](http::Response&& resp) mutable {
          asio::post(io, [this, pp, nid, t = std::move(t), r = std::move(resp)]() mutable {
            on_in_doubt_lookup(*pp, nid, t, std::move(r));
          });
        });
        return;
      }
    }
    a.lookup_done = true;
    if (a.plan.batch && !a.no_batch && p.adapter->max_batch() > 1 && !a.resend_in_doubt) {
      start_batch(a, p, now, std::move(text), address, marks, sends);
      return;
    }
    SendContext ctx{a.n, a.plan, text, a.d.attempt + 1, a.resend_in_doubt, now, receipt_url(p, nid)};
    http::Request req;
    if (!build_or_dead_letter(a, p, ctx, req)) return;
    mark_sending(a, p, address, marks, {});
    ++p.in_flight;
    Provider* pp = &p;
    sends.add(
        std::move(req),
        [this, pp, nid](http::Response&& resp) {
          asio::post(io, [this, pp, nid, r = std::move(resp)]() mutable { on_response(*pp, nid, std::move(r)); });
        },
        a.n.expires_at_ms);
  }

  /// Gathers compatible notifications waiting behind `first` into one request (SendGrid's
  /// personalizations). Falls back to a single send when the adapter refuses the batch.
  void start_batch(Active& first, Provider& p, std::int64_t now, std::string first_text, const std::string& first_address,
                   WriteBatch& marks, Sends& sends) {
    std::vector<Active*> group{&first};
    std::vector<std::string> addresses{first_address};
    std::vector<std::string> texts;
    texts.reserve(p.adapter->max_batch());
    texts.push_back(std::move(first_text));
    while (group.size() < p.adapter->max_batch()) {
      const Id next = p.peek_waiting();
      if (next == 0) break;
      auto it = active.find(next);
      if (it == active.end()) {
        p.pop_waiting();
        continue;
      }
      Active& b = it->second;
      if (!batch_compatible(first, b)) break;  // keeps lane order: the batch ends here
      p.pop_waiting();
      if (expired(b, now)) {
        expire(b);
        continue;
      }
      std::string address = address_if_needed(p, b);
      if (!address.empty()) {
        if (const Suppression* why = suppression_of(b.plan.channel, address)) {
          suppress(b, *why);
          continue;
        }
      }
      group.push_back(&b);
      addresses.push_back(std::move(address));
      texts.push_back(render_template(b.plan.template_text, b.n.data_json));
    }
    std::vector<SendContext> ctxs;
    ctxs.reserve(group.size());
    for (std::size_t i = 0; i < group.size(); ++i) {
      Active& a = *group[i];
      ctxs.push_back(SendContext{a.n, a.plan, texts[i], a.d.attempt + 1, false, now, receipt_url(p, a.n.id)});
    }
    http::Request req;
    try {
      req = group.size() == 1 ? p.adapter->build(ctxs.front()) : p.adapter->build_batch(ctxs);
    } catch (const std::exception&) {
      // The adapter cannot carry these together (e.g. an address twice): they all go alone, the
      // first now and the others from the front of their lanes, in order. Marking them keeps the
      // next pump from gathering (and failing) the same group again.
      for (Active* m : group) m->no_batch = true;
      for (std::size_t i = group.size(); i-- > 1;) p.waiting[static_cast<int>(group[i]->n.priority)].push_front(group[i]->n.id);
      group.resize(1);
      if (!build_or_dead_letter(first, p, ctxs.front(), req)) return;
    }
    std::vector<Id> members;
    members.reserve(group.size());
    std::int64_t expires = 0;
    for (const Active* m : group) {
      if (m->n.expires_at_ms != 0 && (expires == 0 || m->n.expires_at_ms < expires)) expires = m->n.expires_at_ms;
    }
    const std::string detail = group.size() > 1 ? "in a batch of " + std::to_string(group.size()) : std::string();
    for (std::size_t i = 0; i < group.size(); ++i) {
      mark_sending(*group[i], p, addresses[i], marks, detail);
      members.push_back(group[i]->n.id);
    }
    ++p.in_flight;
    if (members.size() > 1) c_batched.fetch_add(1, std::memory_order_relaxed);
    Provider* pp = &p;
    sends.add(
        std::move(req),
        [this, pp, m = std::move(members)](http::Response&& resp) mutable {
          asio::post(io, [this, pp, m = std::move(m), r = std::move(resp)]() mutable {
            on_batch_response(*pp, m, std::move(r));
          });
        },
        expires);
  }

  void suppress(Active& a, const Suppression& why) {
    c_suppressed.fetch_add(1, std::memory_order_relaxed);
    finish(a, State::suppressed, "suppressed",
           (why.reason == "opted_out" ? "recipient opted out of " : "address unusable on ") + why.channel + " (" +
               why.detail + ", notification " + std::to_string(why.notification_id) + ")");
  }

  void dispatch(std::int64_t now) {
    auto sends = std::make_shared<Sends>();
    // Everything recorded so far in this step goes first, in the same commit: events keep their order.
    WriteBatch marks = std::exchange(pending_writes, WriteBatch{});
    for (auto& [name, p] : providers) {
      request_token_if_due(p, now);
      if (!p.adapter->ready(now)) {
        if (p.has_waiting()) wake_at(now + 1000, now);  // look again for the token (or its retry) soon
        continue;
      }
      while (p.in_flight < p.config.concurrency && p.has_waiting()) {
        const Id id = p.peek_waiting();
        auto it = active.find(id);
        if (it == active.end()) {  // cancelled while waiting
          p.pop_waiting();
          continue;
        }
        Active& a = it->second;
        if (expired(a, now)) {
          p.pop_waiting();
          expire(a);
          continue;
        }
        const std::string address = address_if_needed(p, a);
        if (!address.empty()) {
          if (const Suppression* why = suppression_of(a.plan.channel, address)) {
            p.pop_waiting();
            suppress(a, *why);
            continue;
          }
        }
        if (!take_rate_token(p, now)) break;
        p.pop_waiting();
        start_one(a, p, now, address, marks, *sends);
      }
    }
    // Final states recorded above (expired, suppressed) stay in pending_writes: pump() submits
    // them right after these marks.
    if (sends->empty()) {
      if (!marks.empty()) store->submit(std::move(marks));
      return;
    }
    // The request goes out only once "sending" is durable: after a crash an attempt that may have
    // reached the provider is always known, and is treated as in doubt rather than forgotten.
    store->submit(std::move(marks), [this, sends](std::exception_ptr err, WriteBatch&) {
      auto unsent = [](http::Callback& cb, const char* why) {
        http::Response r;
        r.transport_error = why;
        cb(std::move(r));
      };
      if (err) {
        // Nothing was recorded, so nothing may be sent: answer each as a transport failure.
        for (auto& [req, cb] : sends->requests) unsent(cb, "store failed before sending");
        return;
      }
      const std::int64_t committed_at = now_ms();
      std::vector<std::pair<http::Request, http::Callback>> go;
      go.reserve(sends->requests.size());
      for (std::size_t i = 0; i < sends->requests.size(); ++i) {
        auto& [req, cb] = sends->requests[i];
        const std::int64_t expires = sends->expires_at_ms[i];
        if (expires != 0 && committed_at >= expires) {
          unsent(cb, "not sent: expires_at passed while the store could not record the attempt");
        } else {
          go.emplace_back(std::move(req), std::move(cb));
        }
      }
      if (!go.empty()) http->submit_many(std::move(go));
    });
  }

  void on_response(Provider& p, Id id, http::Response resp) {
    in_flight_count.fetch_sub(1);
    --p.in_flight;  // before anything else: the slot is free whatever became of the notification
    metrics.request(p.config.name, resp.latency);
    auto it = active.find(id);
    if (it == active.end()) return;
    Active& a = it->second;
    handle_outcome(a, p, p.adapter->classify(resp), resp);
    post_pump();
  }

  void on_batch_response(Provider& p, const std::vector<Id>& members, http::Response resp) {
    --p.in_flight;
    metrics.request(p.config.name, resp.latency);
    std::vector<Outcome> outcomes = p.adapter->classify_batch(resp, members.size());
    for (std::size_t i = 0; i < members.size(); ++i) {
      in_flight_count.fetch_sub(1);
      auto it = active.find(members[i]);
      if (it == active.end()) continue;
      Outcome out = i < outcomes.size() ? std::move(outcomes[i]) : Outcome{};
      Active& a = it->second;
      if (members.size() > 1 && out.kind == OutcomeKind::permanent) {
        // One bad member can make the provider refuse the whole request: each goes again alone,
        // and this attempt does not count against the provider.
        a.in_flight = false;
        a.provider = nullptr;
        a.no_batch = true;
        --a.d.provider_attempt;
        Event e = make_event(a, "attempt_failed");
        e.provider = p.config.name;
        e.http_status = static_cast<int>(resp.status);
        e.detail = "the batch was refused (" + out.error + "); sending alone";
        record(a, std::move(e), false);
        enqueue_for_provider(a);
        continue;
      }
      handle_outcome(a, p, std::move(out), resp);
    }
    post_pump();
  }

  /// What happens to a notification after one provider answer. May finish (erase) `a`.
  void handle_outcome(Active& a, Provider& p, Outcome out, const http::Response& resp) {
    const Id id = a.n.id;
    a.in_flight = false;
    a.provider = nullptr;
    const std::int64_t now = now_ms();
    auto attempt_event = [&](const char* kind) {
      Event e = make_event(a, kind);
      e.provider = p.config.name;
      e.latency_us = resp.latency.count();
      e.http_status = static_cast<int>(resp.status);
      return e;
    };
    auto record_failed_attempt = [&] {
      a.failure = error_class_of(out.kind, resp);
      Event e = attempt_event("attempt_failed");
      e.error_class = a.failure;
      e.detail = out.error;
      record(a, std::move(e), false);
    };
    auto suppress_address = [&](const char* reason) {
      if (a.d.address.empty()) a.d.address = p.adapter->address_for(a.n, a.d.channel);
      add_suppression(a.d.channel, a.d.address, reason, out.error, p.config.name, id);
    };
    metrics.attempt(p.config.name, out.kind);
    switch (out.kind) {
      case OutcomeKind::accepted: {
        c_accepted.fetch_add(1, std::memory_order_relaxed);
        metrics.accepted(a.n.priority, std::chrono::milliseconds(now - a.n.created_at_ms));
        a.d.provider_message_id = out.provider_message_id;
        a.d.cost += p.config.cost_per_message;
        if (p.adapter->has_receipts()) a.d.accepted_at_ms = now;
        Event e = attempt_event("accepted");
        e.detail = out.provider_message_id;
        e.cost = p.config.cost_per_message;
        record(a, std::move(e), false);
        finish(a, State::completed, "completed", out.provider_message_id);
        break;
      }
      case OutcomeKind::retryable: {
        record_failed_attempt();
        if (a.d.provider_attempt < p.max_attempts) {
          const std::int64_t delay = backoff_ms(options.retry, a.d.provider_attempt, out.retry_after_ms, rng);
          const std::int64_t at = now + delay;
          if (a.n.expires_at_ms != 0 && at >= a.n.expires_at_ms) {
            a.d.last_error = out.error;
            expire(a);
            break;
          }
          c_retries.fetch_add(1, std::memory_order_relaxed);
          a.d.state = State::retry_scheduled;
          a.d.next_at_ms = at;
          a.d.last_error = out.error;
          Event e = make_event(a, "retry_scheduled");
          e.provider = p.config.name;
          e.detail = "in " + std::to_string(delay) + " ms" +
                     (out.retry_after_ms >= 0 ? " (Retry-After " + std::to_string(out.retry_after_ms) + " ms)" : "");
          record(a, std::move(e), true);
          a.outstanding = false;
          --outstanding;
          scheduler.defer(id, at);
        } else {
          fail_over(a, out.error);
        }
        break;
      }
      case OutcomeKind::permanent: {
        record_failed_attempt();
        fail_over(a, out.error);
        break;
      }
      case OutcomeKind::recipient_invalid: {
        record_failed_attempt();
        // An invalid number or an unregistered token will not get better: never try it again.
        suppress_address("unusable");
        dead_letter(a, "recipient invalid: " + out.error);
        break;
      }
      case OutcomeKind::recipient_opted_out: {
        record_failed_attempt();
        suppress_address("opted_out");
        c_suppressed.fetch_add(1, std::memory_order_relaxed);
        finish(a, State::suppressed, "opted_out", "recipient opted out: " + out.error);
        break;
      }
    }
  }

  /// The provider's answer about an attempt left in doubt by a crash.
  void on_in_doubt_lookup(Provider& p, Id id, const std::string& text, http::Response resp) {
    in_flight_count.fetch_sub(1);
    --p.in_flight;
    auto it = active.find(id);
    if (it == active.end()) return;
    Active& a = it->second;
    a.in_flight = false;
    a.provider = nullptr;
    const std::string no_id;
    LookupResult found = p.adapter->parse_lookup(resp, LookupContext{a.n, text, no_id, a.attempt_started_ms});
    Event e = make_event(a, "lookup");
    e.provider = p.config.name;
    e.latency_us = resp.latency.count();
    e.http_status = static_cast<int>(resp.status);
    switch (found.found) {
      case LookupResult::Found::yes: {
        e.detail = "the attempt in doubt reached " + p.config.name + " as " + found.provider_message_id + "; not resent";
        a.d.provider_message_id = found.provider_message_id;
        const Receipt& r = found.receipt;
        const std::string current;
        const ReceiptAction act = decide_receipt(r.status, current);
        const std::string channel = a.d.channel, address = a.d.address;
        complete_in_doubt(a, p, std::move(e));
        if (!act.ignore && !act.receipt.empty()) {
          pending_writes.receipts.push_back({id, act.receipt, now_ms(), false});
          recent_receipts[id] = act.receipt;
        }
        if (!act.ignore && !act.suppress_reason.empty()) {
          add_suppression(channel, address, act.suppress_reason, r.provider_status + " " + r.error_code,
                          p.config.name, id);
        }
        break;
      }
      case LookupResult::Found::no:
        e.detail = "the attempt in doubt never reached " + p.config.name + "; sending it";
        record(a, std::move(e), false);
        a.lookup_done = true;
        enqueue_for_provider(a);
        break;
      case LookupResult::Found::unknown: {
        ++a.lookups_failed;
        e.detail = "status query failed: " + (found.error.empty() ? std::string("no answer") : found.error);
        record(a, std::move(e), false);
        if (a.lookups_failed >= 3) {
          a.lookup_done = true;  // the provider cannot say: resend, flagged in doubt
          enqueue_for_provider(a);
        } else {
          a.outstanding = false;
          --outstanding;
          scheduler.defer(id, now_ms() + 500LL * a.lookups_failed);
        }
        break;
      }
    }
    flush_writes();
    post_pump();
  }

  void fail_over(Active& a, const std::string& error) {
    a.d.last_error = error;
    const auto next = static_cast<std::size_t>(a.d.provider_index) + 1;
    if (next >= a.plan.providers.size()) {
      dead_letter(a, "every provider failed; last error: " + error);
      return;
    }
    c_failovers.fetch_add(1, std::memory_order_relaxed);
    Event e = make_event(a, "failed_over");
    e.provider = a.plan.providers[next];
    e.detail = "from " + a.d.provider + ": " + error;
    a.d.provider_index = static_cast<int>(next);
    a.d.provider_attempt = 0;
    a.d.state = State::routed;
    record(a, std::move(e), true);
    enqueue_for_provider(a);
  }

  void arm_timer(std::int64_t now) {
    auto due = scheduler.next_due();
    if (!due) return;
    if (timer_due_ms != 0 && timer_due_ms <= *due) return;  // already set to wake in time
    timer_due_ms = *due;
    timer.expires_after(std::chrono::milliseconds(std::max<std::int64_t>(0, *due - now)));
    timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;  // re-armed or stopping
      timer_due_ms = 0;
      pump();
    });
  }

  // ---- receipts and reconciliation (loop thread) ------------------------------------

  /// A rejected receipt changes nothing; it is counted by kind and logged in aggregate by the
  /// housekeeping timer (events of notification 0), so a flood of forgeries cannot fill the disk.
  /// Any thread.
  void reject_receipt(const std::string& provider, int status, const std::string& reason, const std::string& remote) {
    c_receipts_rejected.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(tally_mutex);
    rejections.add(provider, status, reason, remote, now_ms());
  }

  /// Loop thread: writes the refused receipts counted since the last call.
  void log_rejections() {
    std::vector<Event> events;
    {
      std::lock_guard lock(tally_mutex);
      if (rejections.empty()) return;
      events = rejections.drain();
    }
    for (auto& e : events) {
      log(LogLevel::warning, "provider receipts refused", {{"provider", e.provider}, {"status", std::to_string(e.http_status)}, {"detail", e.detail}});
      pending_writes.events.push_back(std::move(e));
    }
    flush_writes();
  }

  void arm_housekeeping() {
    if (closing.load()) return;
    housekeeping_timer.expires_after(options.rejection_log_interval);
    housekeeping_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      log_rejections();
      arm_housekeeping();
    });
  }

  /// On the receipt server's thread: checks and reads everything a receipt needs (the adapter's
  /// receipt methods are const and touch configuration only; the store's reads are thread-safe),
  /// then hands the result to the loop, so the loop never waits on SQLite for a receipt.
  void on_receipt(http::ServerRequest req, http::Respond respond) {
    static constexpr std::string_view prefix = "/receipts/";
    if (!receipts_ready.load(std::memory_order_acquire)) {
      respond(http::error_response(503, "starting", "the engine is starting; send again"));
      return;
    }
    if (store->health().degraded) {
      // An applied receipt could not be recorded now: the provider keeps it and sends it again.
      http::ServerResponse busy = http::error_response(503, "store_degraded", "the engine cannot record receipts now; send again later");
      busy.headers.emplace_back("Retry-After", "30");
      respond(std::move(busy));
      return;
    }
    const std::string_view path = req.path;
    if (path.substr(0, prefix.size()) != prefix) {
      respond(http::error_response(404, "not_found", "receipts are posted to /receipts/<provider>"));
      return;
    }
    const std::string name(path.substr(prefix.size()));
    auto pit = providers.find(name);  // the map never changes after start: safe to search from here
    if (pit == providers.end() || !pit->second.adapter->has_receipts()) {
      reject_receipt(name, 404, "no provider '" + name + "' takes receipts", req.remote);
      respond(http::error_response(404, "unknown_provider", "no provider '" + name + "' takes receipts"));
      return;
    }
    if (req.method != "POST") {
      respond(http::error_response(405, "method_not_allowed", "receipts are POSTed"));
      return;
    }
    Provider& p = pit->second;
    InboundRequest in;
    in.method = std::move(req.method);
    in.url = public_url + req.target;  // what the provider called, and signed (Twilio)
    in.path = std::move(req.path);
    in.query = std::move(req.query);
    in.headers = std::move(req.headers);
    in.body = std::move(req.body);
    in.now_ms = now_ms();
    const ReceiptCheck check = p.adapter->verify_receipt(in);
    if (check.status != 0) {
      reject_receipt(name, check.status, check.reason, req.remote);
      respond(http::error_response(static_cast<unsigned>(check.status), check.status == 401 ? "unauthorized" : "forbidden",
                          check.reason));
      return;
    }
    std::vector<Receipt> receipts;
    try {
      receipts = p.adapter->parse_receipt(in);
    } catch (const std::exception& ex) {
      reject_receipt(name, 400, std::string("unreadable receipt: ") + ex.what(), req.remote);
      respond(http::error_response(400, "bad_receipt", ex.what()));
      return;
    }
    auto rows = std::make_shared<std::vector<std::optional<StoredNotification>>>();
    rows->reserve(receipts.size());
    for (const Receipt& r : receipts) {
      rows->push_back(r.notification_id == 0 ? std::nullopt : store->get(r.notification_id));
    }
    Provider* pp = &p;
    asio::post(io, [this, pp, rows, rs = std::move(receipts), done = std::move(respond)]() mutable {
      for (std::size_t i = 0; i < rs.size(); ++i) {
        apply_receipt(*pp, rs[i], false, (*rows)[i] ? &*(*rows)[i] : nullptr);
      }
      flush_writes();
      http::ServerResponse ok;
      ok.status = static_cast<unsigned>(pp->adapter->receipt_ok_status());
      ok.content_type.clear();
      done(std::move(ok));  // answered once applied: a crash before this makes the provider resend
    });
  }

  /// Records one genuine receipt (from a callback, or from a status query when `from_lookup`).
  /// Returns whether it changed anything.
  bool apply_receipt(Provider& p, const Receipt& r, bool from_lookup, const StoredNotification* row) {
    const Id id = r.notification_id;
    if (id == 0) return false;
    // The notification's current facts: from memory while the engine works on it, else its row
    // (read by the caller, off the loop).
    Notification n;
    DeliveryState d;
    if (auto it = active.find(id); it != active.end()) {
      n = it->second.n;
      d = it->second.d;
    } else if (row != nullptr) {
      n = row->notification;
      d = row->delivery;
    } else {
      return false;  // not ours (or not yet committed: the provider will send the next status)
    }
    if (d.provider != p.config.name) return false;  // a receipt for another provider's attempt
    if (!r.provider_message_id.empty() && !d.provider_message_id.empty() && r.provider_message_id != d.provider_message_id) {
      return false;  // about an earlier attempt
    }
    if (auto it = recent_receipts.find(id); it != recent_receipts.end()) d.receipt = it->second;
    const ReceiptAction act = decide_receipt(r.status, d.receipt);
    if (act.ignore) return false;
    c_receipts.fetch_add(1, std::memory_order_relaxed);
    Event e = make_event(n, d.attempt, act.event);
    e.provider = p.config.name;
    e.detail = r.provider_status.empty() ? std::string(to_string(r.status)) : r.provider_status;
    if (!r.error_code.empty()) e.detail += " (error " + r.error_code + ")";
    if (from_lookup) e.detail += "; from a status query";
    pending_writes.events.push_back(std::move(e));
    if (!act.receipt.empty()) {
      const std::int64_t at = now_ms();
      pending_writes.receipts.push_back({id, act.receipt, at, false});
      if (recent_receipts.size() > 100'000) recent_receipts.clear();  // only bridges the commit delay
      recent_receipts[id] = act.receipt;
      reconcile_checks.erase(id);
      reconcile_next_ms.erase(id);
      if (auto it = active.find(id); it != active.end()) {
        it->second.d.receipt = act.receipt;
        it->second.d.receipt_at_ms = at;
      }
    }
    if (!act.suppress_reason.empty()) {
      add_suppression(d.channel, d.address, act.suppress_reason,
                      r.provider_status + (r.error_code.empty() ? "" : " " + r.error_code), p.config.name, id);
    }
    settle_in_doubt_by_receipt(id, p, r);
    return true;
  }

  /// A receipt for an attempt a crash left in doubt proves it reached the provider: complete the
  /// notification instead of asking again or resending.
  void settle_in_doubt_by_receipt(Id id, Provider& p, const Receipt& r) {
    auto it = active.find(id);
    if (it == active.end()) return;
    Active& a = it->second;
    if (!a.resend_in_doubt || a.in_flight || a.d.provider != p.config.name) return;
    if (!r.provider_message_id.empty()) a.d.provider_message_id = r.provider_message_id;
    Event e = make_event(a, "reconciled");
    e.detail = "a receipt shows the attempt in doubt reached " + p.config.name + "; not resent";
    complete_in_doubt(a, p, std::move(e));
  }

  /// Completes a notification whose attempt in doubt is known to have reached `p`, without a
  /// resend: counted and charged like an accepted attempt. `a` is gone afterwards.
  void complete_in_doubt(Active& a, Provider& p, Event reconciled) {
    c_reconciled.fetch_add(1, std::memory_order_relaxed);
    c_accepted.fetch_add(1, std::memory_order_relaxed);
    a.d.cost += p.config.cost_per_message;
    if (p.adapter->has_receipts()) a.d.accepted_at_ms = now_ms();
    reconciled.kind = "reconciled";
    reconciled.provider = p.config.name;
    record(a, std::move(reconciled), false);
    finish(a, State::completed, "completed", a.d.provider_message_id);
  }

  void arm_reconcile() {
    if (closing.load()) return;
    bool any = false;
    for (const auto& [name, p] : providers) any = any || (p.has_lookup && p.adapter->has_receipts());
    if (!any) return;
    reconcile_timer.expires_after(options.reconcile_interval);
    reconcile_timer.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;
      reconcile_sweep();
      arm_reconcile();
    });
  }

  /// Asks providers about deliveries accepted long ago that never got a final receipt.
  void reconcile_sweep() {
    const std::int64_t now = now_ms();
    std::vector<std::string> names;
    for (const auto& [name, p] : providers) {
      if (p.has_lookup && p.adapter->has_receipts()) names.push_back(name);
    }
    auto rows = store->awaiting_receipt(now - options.reconcile_after.count(), names, 500);
    for (auto& row : rows) {
      const Id id = row.notification.id;
      if (reconciling.count(id) != 0) continue;
      if (auto it = reconcile_next_ms.find(id); it != reconcile_next_ms.end() && it->second > now) continue;
      Provider& p = providers.at(row.delivery.provider);
      const std::string text;
      auto req = p.adapter->build_lookup(
          LookupContext{row.notification, text, row.delivery.provider_message_id, row.delivery.accepted_at_ms});
      if (!req) continue;
      reconciling.insert(id);
      c_lookups.fetch_add(1, std::memory_order_relaxed);
      Provider* pp = &p;
      http->submit(std::move(*req), [this, pp, row = std::move(row)](http::Response&& resp) mutable {
        asio::post(io, [this, pp, row = std::move(row), r = std::move(resp)]() mutable {
          on_reconcile_lookup(*pp, row, r);
        });
      });
    }
  }

  void on_reconcile_lookup(Provider& p, const StoredNotification& row, const http::Response& resp) {
    const Id id = row.notification.id;
    reconciling.erase(id);
    const std::string text;
    LookupResult found =
        p.adapter->parse_lookup(resp, LookupContext{row.notification, text, row.delivery.provider_message_id,
                                                    row.delivery.accepted_at_ms});
    if (found.found == LookupResult::Found::yes && found.receipt.status != ReceiptStatus::progress &&
        found.receipt.status != ReceiptStatus::bounced_soft) {
      Receipt r = found.receipt;
      r.notification_id = id;
      if (r.provider_message_id.empty()) r.provider_message_id = found.provider_message_id;
      if (apply_receipt(p, r, true, &row)) c_reconciled.fetch_add(1, std::memory_order_relaxed);
      if (recent_receipts.count(id) == 0) {
        // The answer was final but records no receipt of its own (an opt-out, or a stale answer):
        // close the row so it is not looked up again on every sweep.
        pending_writes.receipts.push_back(
            {id, r.status == ReceiptStatus::opted_out ? "failed" : "unconfirmed", now_ms(), true});
      }
      reconcile_checks.erase(id);
      reconcile_next_ms.erase(id);
      flush_writes();
      return;
    }
    // Not final yet, unknown to the provider, or no answer: ask again later, less and less often,
    // and give up after five tries (the receipt is then "unconfirmed").
    const int checks = ++reconcile_checks[id];
    Event e = make_event(row.notification, row.delivery.attempt, "lookup");
    e.provider = p.config.name;
    e.http_status = static_cast<int>(resp.status);
    e.detail = found.found == LookupResult::Found::yes ? "still " + found.receipt.provider_status
               : found.found == LookupResult::Found::no ? std::string("the provider does not know the message")
                                                        : "status query failed: " + found.error;
    if (checks >= 5) {
      e.detail += "; giving up: receipt unconfirmed";
      pending_writes.receipts.push_back({id, "unconfirmed", now_ms(), true});
      reconcile_checks.erase(id);
      reconcile_next_ms.erase(id);
    } else {
      reconcile_next_ms[id] = now_ms() + options.reconcile_interval.count() * (1LL << checks);
    }
    pending_writes.events.push_back(std::move(e));
    flush_writes();
  }

  // ---- control ------------------------------------------------------------------

  template <class F>
  auto on_loop(F&& f) -> decltype(f()) {
    auto task = std::make_shared<std::packaged_task<decltype(f())()>>(std::forward<F>(f));
    auto future = task->get_future();
    asio::post(io, [task] { (*task)(); });
    // close() may stop the loop after a caller's check: then the task never runs.
    while (future.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
      if (io.stopped()) throw EngineClosed("engine is closed");
    }
    return future.get();
  }

  /// Control calls change state only while the store takes writes: otherwise the caller would be
  /// told of a change that status() cannot show and a crash could lose.
  void require_writable(const char* what) const {
    const StoreHealth h = store->health();
    if (h.degraded) {
      throw StoreError(std::string(what) + " refused: the store cannot write (" + h.error +
                       "); accepted notifications are held until it can");
    }
  }

  bool cancel(Id id) {
    if (closing.load()) throw EngineClosed("engine is closed");
    require_writable("cancel");
    const bool cancelled = on_loop([&] {
      auto it = active.find(id);
      if (it == active.end() || it->second.in_flight) return false;
      c_cancelled.fetch_add(1, std::memory_order_relaxed);
      finish(it->second, State::cancelled, "cancelled", "cancelled by the caller");
      flush_writes();
      post_pump();
      return true;
    });
    if (cancelled) store->flush();  // the caller may ask for the status next: let it see "cancelled"
    return cancelled;
  }

  void retry(Id id) {
    if (closing.load()) throw EngineClosed("engine is closed");
    require_writable("retry");
    auto row = store->get(id);
    if (!row) {
      store->flush();  // it may be a final state still on its way to the store
      row = store->get(id);
    }
    if (!row) throw NotFound("notification " + std::to_string(id) + " not found");
    if (row->delivery.state != State::dead_lettered) {
      throw InvalidState("notification " + std::to_string(id) + " is " + std::string(to_string(row->delivery.state)) +
                         "; only dead-lettered notifications can be retried");
    }
    const bool ok = on_loop([&] {
      if (active.count(id) != 0) return false;
      Active a;
      a.n = std::move(row->notification);
      a.d = row->delivery;
      a.d.state = State::queued;
      a.d.provider_index = 0;
      a.d.provider_attempt = 0;
      a.d.next_at_ms = 0;
      a.d.last_error.clear();
      Event e = make_event(a, "retried");
      e.detail = "re-queued from the dead-letter set";
      record(a, std::move(e), true);
      scheduler.add(id, a.n.priority, 0, a.n.ordering_key);
      active.emplace(id, std::move(a));
      active_count.fetch_add(1);
      flush_writes();
      post_pump();
      return true;
    });
    if (!ok) throw InvalidState("notification " + std::to_string(id) + " is already being retried");
    store->flush();
  }

  bool wait_idle(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (active_count.load() > 0) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    // Final states are recorded by the loop; make sure they reached the store (which may be
    // holding them while the disk is full: then keep trying until the deadline).
    if (!closing.load()) on_loop([this] { flush_writes(); });
    for (;;) {
      try {
        store->flush();
        return true;
      } catch (const StoreError&) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
  }

  void close() {
    std::call_once(close_once, [this] {
      closing.store(true);
      retention.reset();  // a pass in progress ends after its current chunk
      const auto deadline = std::chrono::steady_clock::now() + options.close_timeout;
      // Let answers already on their way be recorded, so a clean stop leaves nothing in doubt.
      while (in_flight_count.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      if (const auto left = in_flight_count.load(); left > 0) {
        log(LogLevel::warning, "closing with attempts still unanswered: they stay in doubt until the next start",
            {{"in_flight", std::to_string(left)}});
      }
      if (receipt_server) receipt_server->stop();  // no receipt may arrive once the loop is gone
      asio::post(io, [this] {
        timer.cancel();
        rate_timer.cancel();
        reconcile_timer.cancel();
        housekeeping_timer.cancel();
        log_rejections();
        flush_writes();
        work.reset();
        io.stop();
      });
      if (loop_thread.joinable()) loop_thread.join();
      try {
        store->flush();  // runs the callbacks that hand committed "sending" marks to the client
      } catch (const StoreError&) {
        // The disk refuses writes: the store keeps trying for its stop_timeout, below.
      }
      // The store goes first: a held "sending" mark that commits while it stops still hands its
      // request to a live client.
      store.reset();
      http.reset();  // answers still pending are dropped: their rows stay "sending", in doubt
      log(LogLevel::info, "engine closed",
          {{"data_dir", options.data_dir.string()}, {"received", std::to_string(c_received.load())},
           {"resumed", std::to_string(c_recovered.load())}, {"provider_accepted", std::to_string(c_accepted.load())}, {"active", std::to_string(std::max<std::int64_t>(0, active_count.load()))}});
    });
  }
};

Engine::Engine(EngineOptions options, std::shared_ptr<Router> router)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(router))) {}

Engine::~Engine() = default;

SendResult Engine::send(Notification n) {
  std::vector<Notification> one;
  one.push_back(std::move(n));
  return impl_->intake(std::move(one), false).front();
}

std::vector<SendResult> Engine::send_many(std::vector<Notification> batch) {
  if (batch.empty()) return {};
  return impl_->intake(std::move(batch), true);
}

std::optional<StoredNotification> Engine::status(Id id) {
  if (!impl_->store) throw EngineClosed("engine is closed");
  return impl_->store->get(id);
}

std::vector<Event> Engine::trace(Id id) {
  if (!impl_->store) throw EngineClosed("engine is closed");
  return impl_->store->trace(id);
}

std::vector<StoredNotification> Engine::dead_letters(std::size_t limit) {
  if (!impl_->store) throw EngineClosed("engine is closed");
  return impl_->store->list_by_state(State::dead_lettered, limit);
}

void Engine::retry(Id id) { impl_->retry(id); }
bool Engine::cancel(Id id) { return impl_->cancel(id); }
bool Engine::wait_idle(std::chrono::milliseconds timeout) { return impl_->wait_idle(timeout); }

void Engine::flush() {
  if (impl_->closing.load()) return;
  impl_->on_loop([this] { impl_->flush_writes(); });
  impl_->store->flush();
}

EngineStats Engine::stats() const {
  const Impl& i = *impl_;
  EngineStats s;
  s.received = i.c_received.load();
  s.deduplicated = i.c_dedup.load();
  s.attempts = i.c_attempts.load();
  s.accepted = i.c_accepted.load();
  s.retries = i.c_retries.load();
  s.failovers = i.c_failovers.load();
  s.expired = i.c_expired.load();
  s.dead_lettered = i.c_dead.load();
  s.cancelled = i.c_cancelled.load();
  s.in_doubt = i.c_in_doubt.load();
  s.recovered = i.c_recovered.load();
  s.active = static_cast<std::uint64_t>(std::max<std::int64_t>(0, i.active_count.load()));
  s.in_flight = static_cast<std::uint64_t>(std::max<std::int64_t>(0, i.in_flight_count.load()));
  s.suppressed = i.c_suppressed.load();
  s.receipts = i.c_receipts.load();
  s.receipts_rejected = i.c_receipts_rejected.load();
  s.lookups = i.c_lookups.load();
  s.reconciled = i.c_reconciled.load();
  s.batched_requests = i.c_batched.load();
  s.pruned = i.c_pruned.load();
  return s;
}

std::string Engine::metrics_text() {
  const EngineStats c = stats();
  const EngineHealth h = health();
  return impl_->on_loop([&, i = impl_.get()] {
    MetricsGauges g;
    std::uint64_t ready = 0;
    for (int p = 0; p < priority_count; ++p) {
      const auto lane = static_cast<std::size_t>(p);
      g.ready[lane] = i->scheduler.lane_size(static_cast<Priority>(p));
      ready += g.ready[lane];
    }
    for (const auto& [name, provider] : i->providers) {
      for (std::size_t lane = 0; lane < provider.waiting.size(); ++lane) g.waiting[lane] += provider.waiting[lane].size();
      g.provider_in_flight.emplace_back(name, static_cast<std::uint64_t>(std::max(0, provider.in_flight)));
    }
    std::sort(g.provider_in_flight.begin(), g.provider_in_flight.end());
    g.scheduled = i->scheduler.size() - std::min<std::uint64_t>(i->scheduler.size(), ready + i->outstanding);
    g.store_degraded = h.store.degraded;
    g.store_held_batches = h.store.held_batches;
    g.closing = h.closing;
    return i->metrics.render(c, g);
  });
}

EngineHealth Engine::health() const {
  EngineHealth h;
  h.closing = impl_->closing.load();
  if (impl_->store) h.store = impl_->store->health();
  return h;
}

PruneReport Engine::prune() {
  if (impl_->closing.load() || !impl_->retention) throw EngineClosed("engine is closed");
  return impl_->retention->run_now();
}

const std::filesystem::path& Engine::data_dir() const { return impl_->options.data_dir; }

std::string Engine::receipts_url() const {
  return impl_->public_url.empty() ? std::string() : impl_->public_url + "/receipts";
}

std::vector<Suppression> Engine::suppressions(std::size_t limit) {
  if (!impl_->store) throw EngineClosed("engine is closed");
  try {
    impl_->store->flush();  // suppressions recorded by the loop may still be on their way
  } catch (const StoreError&) {
    // held while the disk is full: the committed ones are what can be shown
  }
  return impl_->store->suppressions(limit);
}

bool Engine::unsuppress(const std::string& channel, const std::string& address) {
  if (impl_->closing.load()) throw EngineClosed("engine is closed");
  impl_->require_writable("unsuppress");
  const bool removed = impl_->on_loop([&] {
    if (impl_->suppressed.erase(suppression_key(channel, address)) == 0) return false;
    Suppression x;
    x.channel = channel;
    x.address = address;
    x.remove = true;
    impl_->pending_writes.suppressions.push_back(std::move(x));
    impl_->flush_writes();
    return true;
  });
  if (removed) impl_->store->flush();
  return removed;
}

void Engine::close() { impl_->close(); }

}  // namespace herald
