#include "herald/thread_name.hpp"
#include "herald/engine.hpp"

#include <algorithm>
#include <deque>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "herald/clock.hpp"
#include "herald/errors.hpp"
#include "herald/http_client.hpp"

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
  int in_flight = 0;
  std::array<std::deque<Id>, priority_count> waiting;  ///< routed, waiting for a slot, by lane

  [[nodiscard]] bool has_waiting() const {
    return std::any_of(waiting.begin(), waiting.end(), [](const auto& q) { return !q.empty(); });
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
  Provider* provider = nullptr;  ///< provider of the attempt in flight
};

Event make_event(const Active& a, const char* kind) {
  Event e;
  e.notification_id = a.n.id;
  e.kind = kind;
  e.attempt = a.d.attempt;
  e.type = a.n.type;
  e.tenant = a.n.tenant;
  e.priority = a.n.priority;
  return e;
}

}  // namespace

struct Engine::Impl {
  EngineOptions options;
  std::shared_ptr<Router> router;
  std::unique_ptr<Store> store;
  std::unique_ptr<http::Client> http;
  IdGenerator ids;

  // Intake idempotency index: every key seen since start; older keys are found in the store.
  std::mutex idem_mutex;
  std::unordered_map<IdemKey, IdemEntry, IdemKeyHash> idem;

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

  // Counters read from any thread.
  std::atomic<std::uint64_t> c_received{0}, c_dedup{0}, c_attempts{0}, c_accepted{0}, c_retries{0},
      c_failovers{0}, c_expired{0}, c_dead{0}, c_cancelled{0}, c_in_doubt{0}, c_recovered{0};
  std::atomic<std::int64_t> active_count{0};  ///< accepted, not final (includes not yet admitted)
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
    store = std::make_unique<Store>(options.data_dir, options.durability, options.log_segment_bytes);
    ids.raise_floor(store->max_id());
    http::Client::Options http_options;
    http = std::make_unique<http::Client>(http_options);
    recover();
    loop_thread = std::thread([this] {
      detail::name_this_thread("herald-loop");
      io.run();
    });
    post_pump();
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
        c_in_doubt.fetch_add(1, std::memory_order_relaxed);
        Event e = make_event(a, "in_doubt");
        e.provider = a.d.provider;
        e.detail = "outcome of attempt " + std::to_string(a.d.attempt) + " unknown after a restart; resending once";
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
    if (!batch.empty()) store->commit(std::move(batch));
  }

  // ---- intake (caller threads) ---------------------------------------------

  /// Fills id and created_at, checks the idempotency index. Returns the earlier notification for a
  /// repeat. Called with idem_mutex held.
  std::optional<SendResult> check_idempotency(Notification& n, std::uint64_t hash, const std::string& where) {
    if (n.idempotency_key.empty()) return std::nullopt;
    IdemKey key{n.tenant, n.type, n.recipient_id, n.idempotency_key};
    auto it = idem.find(key);
    if (it == idem.end()) {
      if (auto hit = store->find_idempotent(n.tenant, n.type, n.recipient_id, n.idempotency_key)) {
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
    {
      std::lock_guard lock(idem_mutex);
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
        store->submit(std::move(wb), [this, &durable](std::exception_ptr err, WriteBatch& done) {
          if (!err) {
            asio::post(io, [this, rows = std::move(done.inserts)]() mutable { admit(std::move(rows)); });
            durable.set_value();
          } else {
            durable.set_exception(err);
          }
        });
        future.get();
      } catch (...) {
        active_count.fetch_sub(count);
        std::lock_guard lock(idem_mutex);
        for (const auto& key : reserved) idem.erase(key);
        throw;
      }
      c_received.fetch_add(static_cast<std::uint64_t>(count), std::memory_order_relaxed);
    }
    if (!duplicates.empty()) {
      c_dedup.fetch_add(duplicates.size(), std::memory_order_relaxed);
      WriteBatch wb;
      for (std::size_t i : duplicates) {
        if (auto row = store->get(results[i].id)) results[i].state = row->delivery.state;
        Event e;
        e.notification_id = results[i].id;
        e.kind = "deduplicated";
        e.type = batch[i].type;
        e.tenant = batch[i].tenant;
        e.priority = batch[i].priority;
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
    Event e = make_event(a, kind);
    e.provider = a.d.provider;
    e.detail = std::move(detail);
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

  void dispatch(std::int64_t now) {
    auto sends = std::make_shared<std::vector<std::pair<http::Request, http::Callback>>>();
    // Everything recorded so far in this step goes first, in the same commit: events keep their order.
    WriteBatch marks = std::exchange(pending_writes, WriteBatch{});
    for (auto& [name, p] : providers) {
      while (p.in_flight < p.config.concurrency && p.has_waiting()) {
        Id id = 0;
        for (auto& q : p.waiting) {
          if (!q.empty()) {
            id = q.front();
            q.pop_front();
            break;
          }
        }
        auto it = active.find(id);
        if (it == active.end()) continue;  // cancelled while waiting
        Active& a = it->second;
        if (expired(a, now)) {
          expire(a);
          continue;
        }
        const std::string text = render_template(a.plan.template_text, a.n.data_json);
        ++a.d.attempt;
        ++a.d.provider_attempt;
        a.d.state = State::sending;
        a.d.provider = name;
        a.d.provider_message_id.clear();
        SendContext ctx{a.n, a.plan, text, a.d.attempt, a.resend_in_doubt, now, {}};
        http::Request req = p.adapter->build(ctx);
        Event e = make_event(a, "sending");
        e.provider = name;
        if (a.resend_in_doubt) e.detail = "resend of an attempt in doubt";
        a.resend_in_doubt = false;
        a.in_flight = true;
        a.provider = &p;
        ++p.in_flight;
        in_flight_count.fetch_add(1);
        c_attempts.fetch_add(1, std::memory_order_relaxed);
        marks.events.push_back(std::move(e));
        marks.updates.push_back({a.n.id, a.d});
        const Id nid = a.n.id;
        sends->emplace_back(std::move(req), [this, nid](http::Response&& resp) {
          asio::post(io, [this, nid, r = std::move(resp)]() mutable { on_response(nid, std::move(r)); });
        });
      }
    }
    if (sends->empty()) {
      if (!marks.empty()) store->submit(std::move(marks));
      return;
    }
    // The request goes out only once "sending" is durable: after a crash an attempt that may have
    // reached the provider is always known, and is treated as in doubt rather than forgotten.
    store->submit(std::move(marks), [this, sends](std::exception_ptr err, WriteBatch&) {
      if (err) {
        // Nothing was recorded, so nothing may be sent: answer each as a transport failure.
        for (auto& [req, cb] : *sends) {
          http::Response r;
          r.transport_error = "store failed before sending";
          cb(std::move(r));
        }
        return;
      }
      http->submit_many(std::move(*sends));
    });
  }

  void on_response(Id id, http::Response resp) {
    auto it = active.find(id);
    in_flight_count.fetch_sub(1);
    if (it == active.end()) return;
    Active& a = it->second;
    Provider& p = *a.provider;
    --p.in_flight;
    a.in_flight = false;
    a.provider = nullptr;
    Outcome out = p.adapter->classify(resp);
    const std::int64_t now = now_ms();
    auto attempt_event = [&](const char* kind) {
      Event e = make_event(a, kind);
      e.provider = p.config.name;
      e.latency_us = resp.latency.count();
      e.http_status = static_cast<int>(resp.status);
      return e;
    };
    switch (out.kind) {
      case OutcomeKind::accepted: {
        c_accepted.fetch_add(1, std::memory_order_relaxed);
        a.d.provider_message_id = out.provider_message_id;
        Event e = attempt_event("accepted");
        e.detail = out.provider_message_id;
        record(a, std::move(e), false);
        finish(a, State::completed, "completed", out.provider_message_id);
        break;
      }
      case OutcomeKind::retryable: {
        record(a, [&] {
          Event e = attempt_event("attempt_failed");
          e.detail = out.error;
          return e;
        }(), false);
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
        Event e = attempt_event("attempt_failed");
        e.detail = out.error;
        record(a, std::move(e), false);
        fail_over(a, out.error);
        break;
      }
      case OutcomeKind::recipient_opted_out:
      case OutcomeKind::recipient_invalid: {
        Event e = attempt_event("attempt_failed");
        e.detail = out.error;
        record(a, std::move(e), false);
        dead_letter(a, "recipient invalid: " + out.error);
        break;
      }
    }
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

  // ---- control ------------------------------------------------------------------

  template <class F>
  auto on_loop(F&& f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::forward<F>(f));
    auto future = task.get_future();
    asio::post(io, [&task] { task(); });
    return future.get();
  }

  bool cancel(Id id) {
    if (closing.load()) throw EngineClosed("engine is closed");
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
    // Final states are recorded by the loop; make sure they reached the store.
    if (!closing.load()) on_loop([this] { flush_writes(); });
    store->flush();
    return true;
  }

  void close() {
    std::call_once(close_once, [this] {
      closing.store(true);
      const auto deadline = std::chrono::steady_clock::now() + options.close_timeout;
      // Let answers already on their way be recorded, so a clean stop leaves nothing in doubt.
      while (in_flight_count.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      asio::post(io, [this] {
        timer.cancel();
        flush_writes();
        work.reset();
        io.stop();
      });
      if (loop_thread.joinable()) loop_thread.join();
      store->flush();  // runs the callbacks that hand committed "sending" marks to the client
      http.reset();  // answers still pending are dropped: their rows stay "sending", in doubt
      store.reset();
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
  auto row = impl_->store->get(id);
  if (!row) throw NotFound("notification " + std::to_string(id) + " not found");
  const Notification& n = row->notification;
  std::vector<Event> out;
  for (const char* kind : {"received", "queued"}) {
    Event e;
    e.notification_id = id;
    e.kind = kind;
    e.ts_us = n.created_at_ms * 1000;
    e.type = n.type;
    e.tenant = n.tenant;
    e.priority = n.priority;
    if (std::string_view(kind) == "queued") {
      e.detail = std::string(to_string(n.priority)) + " lane";
      if (n.send_at_ms > n.created_at_ms) e.detail += ", due at " + std::to_string(n.send_at_ms);
      if (!n.ordering_key.empty()) e.detail += ", ordering key '" + n.ordering_key + "'";
    }
    out.push_back(std::move(e));
  }
  for (auto& e : impl_->store->events(id)) {
    e.type = n.type;
    e.tenant = n.tenant;
    e.priority = n.priority;
    out.push_back(std::move(e));
  }
  return out;
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
  return s;
}

const std::filesystem::path& Engine::data_dir() const { return impl_->options.data_dir; }

void Engine::close() { impl_->close(); }

}  // namespace herald
