// The engine: start, close, and the public calls. The work is done by the parts listed in
// engine_impl.hpp, one file each.
#include "herald/engine.hpp"

#include <algorithm>
#include <thread>

#include <boost/asio/post.hpp>

#include "engine_impl.hpp"
#include "herald/errors.hpp"
#include "herald/thread_name.hpp"

namespace herald {

namespace {

/// Whether the adapter has a status API: asks it to build a lookup for a made-up message id.
bool probe_lookup(const Adapter& adapter) {
  Notification n;
  n.recipient_json = R"({"phone":"+15550000000","email":"probe@example.com"})";
  const std::string text, message_id = "probe";
  try {
    return adapter.build_lookup(LookupContext{n, text, message_id, 0}).has_value();
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

Engine::Impl::Impl(EngineOptions opts, std::shared_ptr<Router> r)
    : options(std::move(opts)),
      clock(options.clock ? options.clock : system_clock()),
      router(std::move(r)),
      idempotency(clock->now_ms()),
      machine(options.retry, options.seed != 0 ? options.seed : static_cast<std::uint64_t>(now_us())),
      scheduler(options.weights),
      schedule_timer(io, clock, [this] { pump(); }),
      rate_timer(io, clock, [this] { pump(); }),
      reconcile_timer(io, clock, [this] {
        reconcile_sweep();
        arm_reconcile();
      }),
      housekeeping_timer(io, clock, [this] {
        log_rejections();
        arm_housekeeping();
      }),
      held_timer(io, clock, [this] { write_held(false); }) {
  if (!router) throw ConfigError("router: is required");
  for (const auto& c : options.providers) {
    auto adapter = make_adapter(c);  // validates
    if (providers.count(c.name) != 0) throw ConfigError("providers." + c.name + ": defined twice");
    ProviderSlot p;
    p.waiting = LaneQueue(options.weights);
    p.config = c;
    p.adapter = std::move(adapter);
    p.facts.name = c.name;
    p.facts.max_attempts = c.max_attempts > 0 ? c.max_attempts : options.retry.max_attempts_per_provider;
    p.facts.cost_per_message = c.cost_per_message;
    p.facts.has_receipts = p.adapter->has_receipts();
    p.facts.has_lookup = probe_lookup(*p.adapter);
    p.facts.batches = p.adapter->max_batch() > 1;
    p.breaker = CircuitBreaker(c.circuit);
    max_outstanding += static_cast<std::size_t>(c.concurrency);
    providers.emplace(c.name, std::move(p));
  }
  if (options.route_batch == 0) throw ConfigError("route_batch: must be at least 1");
  if (options.retry.max_attempts_per_provider < 1) {
    throw ConfigError("retry.max_attempts_per_provider: must be at least 1");
  }
  max_outstanding += options.route_batch;
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
  auto embedded = std::make_unique<Store>(options.data_dir, so);
  sqlite = embedded.get();
  store = std::move(embedded);
  ids.raise_floor(store->max_id());
  http::Client::Options http_options;
  http_options.after_answers = [this] { answers.wake(); };
  http = std::make_unique<http::Client>(http_options);
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
        {{"data_dir", options.data_dir.string()}, {"providers", names}, {"resumed", std::to_string(count.recovered.load())},
         {"in_doubt", std::to_string(count.in_doubt.load())}, {"receipts_url", public_url}});
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
  retention = std::make_unique<Retention>(*sqlite, sqlite->log_dir(), options.retention, [this](const PruneReport& pass) {
    count.pruned.fetch_add(pass.store.notifications, std::memory_order_relaxed);
  });
}

Engine::Impl::~Impl() { close(); }

void Engine::Impl::log(LogLevel level, const std::string& message, const LogFields& fields) const {
  if (!options.log) return;
  try {
    options.log(level, message, fields);
  } catch (...) {
    // a sink that fails must not take the engine with it
  }
}

void Engine::Impl::close() {
  std::call_once(close_once, [this] {
    closing.store(true);
    // Calls in progress (a send waiting for its commit, a status read) finish first; new ones
    // are refused. Nothing below is torn down under a caller.
    gate.close_and_wait();
    retention.reset();  // a pass in progress ends after its current chunk
    // Real time: answers on their way are waited for, whatever the engine's clock says.
    const auto deadline = std::chrono::steady_clock::now() + options.close_timeout;
    // Let answers already on their way be recorded, so a clean stop leaves nothing in doubt.
    while (count.in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (const auto left = count.in_flight.load(); left > 0) {
      log(LogLevel::warning, "closing with attempts still unanswered: they stay in doubt until the next start",
          {{"in_flight", std::to_string(left)}});
    }
    if (receipt_server) receipt_server->stop();  // no receipt may arrive once the loop is gone
    asio::post(io, [this] {
      schedule_timer.cancel();
      rate_timer.cancel();
      reconcile_timer.cancel();
      housekeeping_timer.cancel();
      held_timer.cancel();
      log_rejections();
      write_held(true);
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
    sqlite = nullptr;
    store.reset();
    http.reset();  // answers still pending are dropped: their rows stay "sending", in doubt
    log(LogLevel::info, "engine closed",
        {{"data_dir", options.data_dir.string()}, {"received", std::to_string(count.received.load())},
         {"resumed", std::to_string(count.recovered.load())}, {"provider_accepted", std::to_string(count.accepted.load())},
         {"active", std::to_string(std::max<std::int64_t>(0, count.active.load()))}});
  });
}

// ---- the public calls: each holds a pass of the call gate while it runs -----------------------

Engine::Engine(EngineOptions options, std::shared_ptr<Router> router)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(router))) {}

Engine::~Engine() = default;

SendResult Engine::send(Notification n) {
  auto pass = impl_->gate.enter();
  std::vector<Notification> one;
  one.push_back(std::move(n));
  return impl_->intake(std::move(one), false).front();
}

std::optional<SendResult> Engine::send_if_quick(Notification& n) {
  auto pass = impl_->gate.enter();
  std::vector<Notification> one;
  one.push_back(std::move(n));
  auto results = impl_->intake(std::move(one), false, &n);
  if (results.empty()) return std::nullopt;  // `n` is back: it needs a commit
  return results.front();
}

std::vector<SendResult> Engine::send_many(std::vector<Notification> batch) {
  auto pass = impl_->gate.enter();
  if (batch.empty()) return {};
  return impl_->intake(std::move(batch), true);
}

std::optional<StoredNotification> Engine::status(Id id) {
  auto pass = impl_->gate.enter();
  return impl_->store->get(id);
}

std::vector<Event> Engine::trace(Id id) {
  auto pass = impl_->gate.enter();
  return impl_->store->trace(id);
}

std::vector<StoredNotification> Engine::dead_letters(std::size_t limit) {
  auto pass = impl_->gate.enter();
  return impl_->store->list_by_state(State::dead_lettered, limit);
}

std::vector<StoredNotification> Engine::by_recipient(const std::string& recipient_id, std::size_t limit) {
  auto pass = impl_->gate.enter();
  return impl_->store->list_by_recipient(recipient_id, limit);
}

void Engine::retry(Id id) {
  auto pass = impl_->gate.enter();
  impl_->retry(id);
}

bool Engine::cancel(Id id) {
  auto pass = impl_->gate.enter();
  return impl_->cancel(id);
}

void Engine::acknowledge(Id id, const std::string& channel) {
  auto pass = impl_->gate.enter();
  impl_->acknowledge(id, channel);
}

bool Engine::wait_idle(std::chrono::milliseconds timeout) {
  auto pass = impl_->gate.enter();
  return impl_->wait_idle(timeout);
}

void Engine::flush() {
  if (impl_->gate.closed()) return;
  auto pass = impl_->gate.enter();
  impl_->flush();
}

EngineStats Engine::stats() const {
  const EngineCounters& c = impl_->count;
  EngineStats s;
  s.received = c.received.load();
  s.deduplicated = c.deduplicated.load();
  s.attempts = c.attempts.load();
  s.accepted = c.accepted.load();
  s.retries = c.retries.load();
  s.failovers = c.failovers.load();
  s.expired = c.expired.load();
  s.dead_lettered = c.dead_lettered.load();
  s.cancelled = c.cancelled.load();
  s.in_doubt = c.in_doubt.load();
  s.recovered = c.recovered.load();
  s.active = static_cast<std::uint64_t>(std::max<std::int64_t>(0, c.active.load()));
  s.in_flight = static_cast<std::uint64_t>(std::max<std::int64_t>(0, c.in_flight.load()));
  s.suppressed = c.suppressed.load();
  s.receipts = c.receipts.load();
  s.receipts_rejected = c.receipts_rejected.load();
  s.lookups = c.lookups.load();
  s.reconciled = c.reconciled.load();
  s.batched_requests = c.batched.load();
  s.pruned = c.pruned.load();
  return s;
}

namespace {

/// The gauges as the loop sees them; runs on the loop thread. (A template: Engine::Impl is private.)
template <class Impl>
MetricsGauges read_gauges(Impl& i, const EngineHealth& h) {
  MetricsGauges g;
  std::uint64_t ready = 0;
  for (int p = 0; p < priority_count; ++p) {
    const auto lane = static_cast<std::size_t>(p);
    g.ready[lane] = i.scheduler.lane_size(static_cast<Priority>(p));
    ready += g.ready[lane];
  }
  for (const auto& [name, provider] : i.providers) {
    for (std::size_t lane = 0; lane < g.waiting.size(); ++lane) g.waiting[lane] += provider.waiting.size(static_cast<Priority>(lane));
    g.provider_in_flight.emplace_back(name, static_cast<std::uint64_t>(std::max(0, provider.in_flight)));
    g.provider_circuit.emplace_back(name, provider.breaker.state());
  }
  std::sort(g.provider_in_flight.begin(), g.provider_in_flight.end());
  std::sort(g.provider_circuit.begin(), g.provider_circuit.end());
  g.scheduled = i.scheduler.size() - std::min<std::uint64_t>(i.scheduler.size(), ready + i.outstanding);
  g.store_degraded = h.store.degraded;
  g.store_held_batches = h.store.held_batches;
  g.closing = h.closing;
  return g;
}

}  // namespace

std::string Engine::metrics_text() {
  auto pass = impl_->gate.enter();
  const EngineStats c = stats();
  const EngineHealth h = health();
  return impl_->on_loop([&, i = impl_.get()] { return i->metrics.render(c, read_gauges(*i, h)); });
}

MetricsGauges Engine::gauges() {
  auto pass = impl_->gate.enter();
  const EngineHealth h = health();
  return impl_->on_loop([&, i = impl_.get()] { return read_gauges(*i, h); });
}

EngineHealth Engine::health() const {
  EngineHealth h;
  h.closing = impl_->closing.load();
  if (impl_->gate.closed()) return h;
  try {
    auto pass = impl_->gate.enter();
    h.store = impl_->store->health();
  } catch (const EngineClosed&) {
    // closed meanwhile: nothing more to say than "closing"
  }
  return h;
}

void Engine::declare_alert(const std::string& name) {
  auto pass = impl_->gate.enter();
  impl_->on_loop([&, i = impl_.get()] { i->metrics.alert(name, false); });
}

void Engine::alert_changed(const std::string& name, bool firing, const std::string& detail) {
  auto pass = impl_->gate.enter();
  impl_->on_loop([&, i = impl_.get()] {
    i->metrics.alert(name, firing);
    Event e;
    e.kind = firing ? EventKind::alert_firing : EventKind::alert_resolved;
    e.ts_us = i->clock->now_us();
    e.alert = name;
    e.detail = detail;
    i->pending_writes.events.push_back(std::move(e));
    i->flush_writes();
  });
}

PruneReport Engine::prune() {
  auto pass = impl_->gate.enter();
  return impl_->retention->run_now();
}

const std::filesystem::path& Engine::data_dir() const { return impl_->options.data_dir; }

std::int64_t Engine::now_ms() const { return impl_->clock->now_ms(); }

std::string Engine::receipts_url() const {
  return impl_->public_url.empty() ? std::string() : impl_->public_url + "/receipts";
}

std::vector<Suppression> Engine::suppressions(std::size_t limit) {
  auto pass = impl_->gate.enter();
  try {
    impl_->store->flush();  // suppressions recorded by the loop may still be on their way
  } catch (const StoreError&) {
    // held while the disk is full: the committed ones are what can be shown
  }
  return impl_->store->suppressions(limit);
}

bool Engine::unsuppress(const std::string& channel, const std::string& address) {
  auto pass = impl_->gate.enter();
  return impl_->unsuppress(channel, address);
}

void Engine::close() { impl_->close(); }

}  // namespace herald
