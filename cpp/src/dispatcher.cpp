// The dispatcher: the engine's loop. It takes ready notifications from the scheduler, asks the
// rules for plans (in batches: one GIL acquisition each), queues them per provider, starts
// requests where providers have free slots once their "sending" marks are durable, and hands
// each answer to the DeliveryMachine. Everything here runs on the loop thread.
#include <algorithm>

#include <boost/asio/post.hpp>

#include "engine_impl.hpp"
#include "herald/errors.hpp"
#include "herald/sms.hpp"

namespace herald {

std::string suppression_key(const std::string& channel, const std::string& address) {
  return channel + '\n' + address;
}

void Engine::Impl::admit(std::vector<Notification> batch) {
  const std::int64_t now = clock->now_ms();
  for (auto& n : batch) {
    const Id id = n.id;
    const Priority pri = n.priority;
    const std::int64_t ready = n.send_at_ms > now ? n.send_at_ms : 0;
    auto [it, inserted] = active.try_emplace(id);  // built in place: no Delivery moved in
    if (!inserted) {
      count.active.fetch_sub(1);  // already known (a retry raced with intake): counted once
      continue;
    }
    it->second.n = std::move(n);
    scheduler.add(id, pri, ready, it->second.n.ordering_key);
  }
  pump();
}

void Engine::Impl::post_pump() {
  if (pump_posted) return;
  pump_posted = true;
  asio::post(io, [this] {
    pump_posted = false;
    pump();
  });
}

void Engine::Impl::flush_writes() {
  if (pending_writes.empty()) return;
  // The next batch starts with the room this one took (bounded): growing from nothing moved each
  // event once more, and an event is eight strings to move.
  const std::size_t events = std::min<std::size_t>(pending_writes.events.size(), 4096);
  const std::size_t updates = std::min<std::size_t>(pending_writes.updates.size(), 1024);
  store->submit(std::move(pending_writes));
  pending_writes = WriteBatch{};
  pending_writes.events.reserve(events);
  pending_writes.updates.reserve(updates);
}

void Engine::Impl::apply(Delivery& x, Step& s, bool was_outstanding, WriteBatch& into) {
  const Id id = x.n.id;
  const std::int64_t now_us = clock->now_us();
  // A plan's step does not end the notification: its parent records how it ended (step_failed,
  // step_succeeded) and the notification's one final event.
  if (x.n.parent_id != 0 && s.next == Next::finish && !s.events.empty()) s.events.pop_back();
  if (x.held_mark && (s.save || !s.events.empty())) release_mark(x, s.save, into);  // s.save: x.d supersedes it
  if (x.held_event && (s.save || !s.events.empty())) release_event(x, into);  // before this step's own events
  // Routed and waiting for a provider's slot: the event rides with the next write (held_events.cpp).
  const bool hold = s.next == Next::queue && !s.save && s.events.size() == 1 && s.events[0].kind == EventKind::routed;
  for (auto& e : s.events) {
    switch (e.kind) {
      case EventKind::sending:
        count.attempts.fetch_add(1, std::memory_order_relaxed);
        break;
      case EventKind::accepted:
        count.accepted.fetch_add(1, std::memory_order_relaxed);
        metrics.accepted(x.n.priority, std::chrono::milliseconds(now_us / 1000 - x.n.created_at_ms));
        break;
      case EventKind::reconciled:  // an attempt in doubt known to have arrived counts as accepted
        count.reconciled.fetch_add(1, std::memory_order_relaxed);
        count.accepted.fetch_add(1, std::memory_order_relaxed);
        break;
      case EventKind::retry_scheduled: count.retries.fetch_add(1, std::memory_order_relaxed); break;
      case EventKind::failed_over: count.failovers.fetch_add(1, std::memory_order_relaxed); break;
      default: break;
    }
    e.ts_us = now_us;
    if (hold) {
      hold_routed(x, std::move(e));
    } else {
      into.events.push_back(std::move(e));
    }
  }
  if (s.save) into.updates.push_back({id, x.d});
  if (s.suppress) add_suppression(*s.suppress, id);
  if (s.receipt != ReceiptState::none) {
    into.receipts.push_back({id, s.receipt, now_us / 1000, false});
    recent_receipts[id] = s.receipt;
  }
  if (!was_outstanding && x.outstanding()) ++outstanding;
  if (was_outstanding && !x.outstanding()) --outstanding;
  switch (s.next) {
    case Next::queue: enqueue_for_provider(x, into); break;
    case Next::schedule: scheduler.defer(id, s.at_ms); break;
    case Next::coordinate: coordinate(x, s, into); break;
    case Next::finish: {
      const Id parent = x.n.parent_id;
      StepRecord ended;
      if (parent == 0) {
        switch (x.d.state) {
          case State::expired: count.expired.fetch_add(1, std::memory_order_relaxed); break;
          case State::dead_lettered: count.dead_lettered.fetch_add(1, std::memory_order_relaxed); break;
          case State::cancelled: count.cancelled.fetch_add(1, std::memory_order_relaxed); break;
          case State::suppressed: count.suppressed.fetch_add(1, std::memory_order_relaxed); break;
          default: break;
        }
        metrics.final_state(x.n.type, x.n.priority, x.d.state);
      } else {
        ended = StepRecord{x.n.step, id, true, x.d.state, x.d.receipt, x.failure, x.d.last_error, x.n.created_at_ms};
      }
      scheduler.finish(id);
      active.erase(id);  // `x` is gone from here on
      count.active.fetch_sub(1);
      if (parent != 0) step_ended(parent, ended, into);
      break;
    }
    default: break;
  }
}

void Engine::Impl::enqueue_for_provider(Delivery& x, WriteBatch& into) {
  ProviderSlot& p = providers.at(x.current_provider());  // checked when the plan was accepted
  if (std::string why = unservable(p, x); !why.empty()) {
    // No request that can only be refused: the next provider of the chain, or the step ends.
    Step s = machine.provider_unusable(x, why);
    apply(x, s, true, into);
    return;
  }
  p.waiting.push_back(x.n.priority, x.n.id);
}

namespace {

/// Checks a rule's plan against the configuration; empty string when usable.
std::string plan_problem(const Plan& plan, const std::unordered_map<std::string, ProviderSlot>& providers) {
  if (plan.steps.empty()) return "plan.steps: is empty";
  for (std::size_t k = 0; k < plan.steps.size(); ++k) {
    const PlanStep& st = plan.steps[k];
    const std::string where = plan.steps.size() == 1 ? "plan." : "plan.steps[" + std::to_string(k) + "].";
    if (st.channel.empty()) return where + "channel: is empty";
    if (!known_channel(st.channel)) {
      return where + "channel: unknown channel '" + st.channel + "' (known: sms, email, push, chat, webhook)";
    }
    if (st.providers.empty()) return where + "providers: is empty";
    for (const auto& name : st.providers) {
      if (providers.count(name) == 0) return where + "providers: unknown provider '" + name + "'";
    }
  }
  return {};
}

}  // namespace

void Engine::Impl::route(std::vector<Delivery*>& batch) {
  std::vector<const Notification*> view;
  view.reserve(batch.size());
  for (Delivery* x : batch) view.push_back(&x->n);
  std::vector<RouteResult> results;
  try {
    results = route_rules(view);  // with the providers' health (provider_health.cpp)
    if (results.size() != batch.size()) throw Error("router returned the wrong number of plans");
  } catch (const std::exception& ex) {
    results.assign(batch.size(), RouteResult{false, {}, std::string("routing failed: ") + ex.what()});
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    RouteResult& r = results[i];
    if (r.ok) {
      if (std::string problem = plan_problem(*r.plan, providers); !problem.empty()) r = RouteResult{false, {}, std::move(problem)};
    }
    Delivery& x = *batch[i];
    Step s = machine.routed(x, std::move(r), clock->now_ms());
    apply(x, s, true, pending_writes);
  }
}

void Engine::Impl::pump() {
  if (closing.load(std::memory_order_relaxed)) {
    flush_writes();
    return;
  }
  const std::int64_t now = clock->now_ms();
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
    std::vector<Delivery*> to_route;
    for (Id id : ids_ready) {
      auto it = active.find(id);
      if (it == active.end()) continue;
      Delivery& x = it->second;
      if (x.phase == Phase::coordinating) {  // a plan with many steps, at its deadline
        Step s = machine.deadline(x, now);
        apply(x, s, false, pending_writes);
        continue;
      }
      Step s = machine.take(x, now);
      if (s.next == Next::route) to_route.push_back(&x);
      apply(x, s, false, pending_writes);
    }
    if (!to_route.empty()) route(to_route);
  }
  // 2. Start attempts where providers have free slots.
  dispatch(now);
  flush_writes();
  if (more_ready) post_pump();
  arm_schedule_timer();
}

void Engine::Impl::arm_schedule_timer() {
  if (auto due = scheduler.next_due()) schedule_timer.arm_at(*due);
}

bool Engine::Impl::take_rate_token(ProviderSlot& p, std::int64_t now) {
  const std::int64_t free_at = rates->take(p.config.name, p.config.rate_per_s, now);
  if (free_at == 0) return true;
  rate_timer.arm_at(free_at);
  return false;
}

void Engine::Impl::request_token_if_due(ProviderSlot& p, std::int64_t now) {
  auto req = p.adapter->token_request(now);
  if (!req) return;
  ProviderSlot* pp = &p;  // providers never change after start: the pointer stays valid
  http->submit(std::move(*req), [this, pp](http::Response&& resp) {
    answers.put([this, pp, r = std::move(resp)] {
      pp->adapter->on_token_response(r, clock->now_ms());
      post_pump();
    });
  });
}

const Suppression* Engine::Impl::suppression_of(const std::string& channel, const std::string& address) const {
  auto it = suppressed.find(suppression_key(channel, address));
  return it == suppressed.end() ? nullptr : &it->second;
}

void Engine::Impl::add_suppression(const SuppressionRequest& what, Id id) {
  if (what.address.empty()) return;
  Suppression x;
  x.channel = what.channel;
  x.address = what.address;
  x.reason = what.reason;
  x.detail = what.detail;
  x.provider = what.provider;
  x.notification_id = id;
  x.at_ms = clock->now_ms();
  metrics.suppression(x.channel, std::string(to_string(x.reason)));
  pending_writes.suppressions.push_back(x);
  suppressed[suppression_key(x.channel, x.address)] = std::move(x);
}

std::string Engine::Impl::receipt_url(const ProviderSlot& p, Id id) const {
  if (public_url.empty() || !p.adapter->has_receipts()) return {};
  return public_url + "/receipts/" + p.config.name + "?hid=" + std::to_string(id);
}

std::string Engine::Impl::address_if_needed(const ProviderSlot& p, const Delivery& x) const {
  // Read only when something will use it: a suppression to check, or receipts that may make it
  // unusable later (it costs a JSON parse).
  if (suppressed.empty() && !p.adapter->has_receipts()) return {};
  return p.adapter->address_for(x.n, x.plan->channel);
}

void Engine::Impl::start_one(Delivery& x, ProviderSlot& p, std::int64_t now, const std::string& address,
                             WriteBatch& marks, Sends& sends) {
  const Id nid = x.n.id;
  Step next = machine.start(x, p.facts);
  std::string text;
  try {
    text = render_template(x.plan->template_text, x.n.data_json);
  } catch (const TemplateError& ex) {
    unbuildable(x, p, ex);  // a missing variable: never sent with a blank
    return;
  }
  if (next.next == Next::look_up) {
    const std::string no_id;
    if (auto req = p.adapter->build_lookup(LookupContext{x.n, text, no_id, x.attempt_started_ms})) {
      Step s = machine.lookup_started(x, p.facts);
      apply(x, s, true, marks);
      ++p.in_flight;
      count.in_flight.fetch_add(1);
      count.lookups.fetch_add(1, std::memory_order_relaxed);
      ProviderSlot* pp = &p;
      sends.add(std::move(*req), [this, pp, nid, t = std::move(text)](http::Response&& resp) mutable {
        answers.put([this, pp, nid, t = std::move(t), r = std::move(resp)]() mutable {
          on_in_doubt_lookup(*pp, nid, t, std::move(r));
        });
      });
      return;
    }
    next = machine.cannot_look_up(x);  // the adapter cannot ask about this one after all
  }
  if (next.next == Next::send_batch && p.adapter->max_batch() > 1) {
    start_batch(x, p, now, std::move(text), address, sends);
    return;
  }
  SendContext ctx{x.n, *x.plan, text, x.d.attempt + 1, x.doubt != Doubt::none, now, receipt_url(p, nid)};
  http::Request req;
  try {
    req = p.adapter->build(ctx);
  } catch (const std::exception& ex) {
    unbuildable(x, p, ex);
    return;
  }
  Step s = machine.sending(x, p.facts, address, {});
  record_sending(x, s, sends);
  count.in_flight.fetch_add(1);
  ++p.in_flight;
  ProviderSlot* pp = &p;
  sends.add(
      std::move(req),
      [this, pp, nid](http::Response&& resp) {
        answers.put([this, pp, nid, r = std::move(resp)]() mutable { on_response(*pp, nid, std::move(r)); });
      },
      x.n.expires_at_ms);
}

void Engine::Impl::start_batch(Delivery& first, ProviderSlot& p, std::int64_t now, std::string first_text,
                               const std::string& first_address, Sends& sends) {
  std::vector<Delivery*> group{&first};
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
    Delivery& b = it->second;
    if (!DeliveryMachine::can_join(first, b)) break;  // keeps lane order: the batch ends here
    p.pop_waiting();
    std::string address = address_if_needed(p, b);
    Step s = machine.at_head(b, address.empty() ? nullptr : suppression_of(b.plan->channel, address), now);
    if (s.next == Next::finish) {
      apply(b, s, true, pending_writes);
      continue;
    }
    std::string text;
    try {
      text = render_template(b.plan->template_text, b.n.data_json);
    } catch (const TemplateError& ex) {
      unbuildable(b, p, ex);
      continue;
    }
    group.push_back(&b);
    addresses.push_back(std::move(address));
    texts.push_back(std::move(text));
  }
  std::vector<SendContext> ctxs;
  ctxs.reserve(group.size());
  for (std::size_t i = 0; i < group.size(); ++i) {
    Delivery& x = *group[i];
    ctxs.push_back(SendContext{x.n, *x.plan, texts[i], x.d.attempt + 1, false, now, receipt_url(p, x.n.id)});
  }
  http::Request req;
  try {
    req = group.size() == 1 ? p.adapter->build(ctxs.front()) : p.adapter->build_batch(ctxs);
  } catch (const std::exception&) {
    // The adapter cannot carry these together (e.g. an address twice): they all go alone, the
    // first now and the others from the front of their lanes, in order. Marking them keeps the
    // next pump from gathering (and failing) the same group again.
    for (Delivery* m : group) m->alone = true;
    for (std::size_t i = group.size(); i-- > 1;) p.waiting.push_front(group[i]->n.priority, group[i]->n.id);
    group.resize(1);
    try {
      req = p.adapter->build(ctxs.front());
    } catch (const std::exception& ex) {
      unbuildable(first, p, ex);
      return;
    }
  }
  std::vector<Id> members;
  members.reserve(group.size());
  std::int64_t expires = 0;
  for (const Delivery* m : group) {
    if (m->n.expires_at_ms != 0 && (expires == 0 || m->n.expires_at_ms < expires)) expires = m->n.expires_at_ms;
  }
  const std::string detail = group.size() > 1 ? "in a batch of " + std::to_string(group.size()) : std::string();
  for (std::size_t i = 0; i < group.size(); ++i) {
    Delivery& x = *group[i];
    Step s = machine.sending(x, p.facts, addresses[i], detail);
    record_sending(x, s, sends);
    count.in_flight.fetch_add(1);
    members.push_back(x.n.id);
  }
  ++p.in_flight;
  if (members.size() > 1) count.batched.fetch_add(1, std::memory_order_relaxed);
  ProviderSlot* pp = &p;
  sends.add(
      std::move(req),
      [this, pp, m = std::move(members)](http::Response&& resp) mutable {
        answers.put([this, pp, m = std::move(m), r = std::move(resp)]() mutable {
          on_batch_response(*pp, m, std::move(r));
        });
      },
      expires);
}

void Engine::Impl::dispatch(std::int64_t now) {
  auto sends = std::make_shared<Sends>();
  // Everything recorded so far in this step is queued first: events keep their order.
  flush_writes();
  WriteBatch marks;
  for (auto& [name, p] : providers) {
    if (!circuit_lets_through(p, now)) continue;  // open: its queue went on (provider_health.cpp)
    request_token_if_due(p, now);
    if (!p.adapter->ready(now)) {
      if (p.has_waiting()) rate_timer.arm_at(now + 1000);  // look again for the token (or its retry) soon
      continue;
    }
    while (p.in_flight < p.config.concurrency && p.has_waiting()) {
      const Id id = p.peek_waiting();
      auto it = active.find(id);
      if (it == active.end()) {  // cancelled while waiting
        p.pop_waiting();
        continue;
      }
      Delivery& x = it->second;
      const std::string address = address_if_needed(p, x);
      Step s = machine.at_head(x, address.empty() ? nullptr : suppression_of(x.plan->channel, address), now);
      if (s.next == Next::finish) {
        p.pop_waiting();
        apply(x, s, true, pending_writes);
        continue;
      }
      if (!take_rate_token(p, now)) break;
      if (!p.breaker.allow(now)) break;  // half-open: its probes are out
      p.pop_waiting();
      start_one(x, p, now, address, marks, *sends);
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
  // Durable at once in the store's journal where it has one, unless a lookup (which starts no
  // attempt, so has no mark) is among them: then, as without a journal, once committed.
  if (marks.empty()) {
    if (const std::uint64_t ticket = store->journal_marks(sends->marks)) {
      for (SendingMark& m : sends->marks) hold_mark(active.at(m.update.id), std::move(m), ticket);
      http->submit_many(std::move(sends->requests));
      return;
    }
  }
  for (SendingMark& m : sends->marks) write_mark(marks, m);
  store->submit(std::move(marks), [this, sends](std::exception_ptr err, WriteBatch&) {
    auto unsent = [](http::Callback& cb, const char* why) {
      http::Response r;
      r.transport_error = why;
      cb(std::move(r));
    };
    if (err) {
      // Nothing was recorded, so nothing may be sent: answer each as a transport failure.
      for (auto& [req, cb] : sends->requests) unsent(cb, "store failed before sending");
      answers.wake();  // answered here, not by the client: no round of its ends after them
      return;
    }
    const std::int64_t committed_at = clock->now_ms();
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
    answers.wake();  // for any answered above as expired
    if (!go.empty()) http->submit_many(std::move(go));
  });
}

namespace {

AnswerFacts facts_of(const http::Response& resp, ErrorClass error_class = ErrorClass::none) {
  AnswerFacts f;
  f.latency_us = resp.latency.count();
  f.http_status = static_cast<int>(resp.status);
  f.error_class = error_class;
  return f;
}

}  // namespace

void Engine::Impl::unbuildable(Delivery& x, ProviderSlot& p, const std::exception& ex) {
  log(LogLevel::error, "a provider adapter could not build a request: the notification is dead-lettered",
      {{"provider", p.config.name}, {"notification_id", std::to_string(x.n.id)}, {"error", ex.what()}});
  // A template's fault names itself ("template: missing variable 'code'"): that is the whole reason.
  Step s = machine.build_failed(x, p.facts, ex.what(), dynamic_cast<const TemplateError*>(&ex) != nullptr);
  apply(x, s, true, pending_writes);
}

void Engine::Impl::answered(Delivery& x, ProviderSlot& p, const Outcome& out, const http::Response& resp,
                            std::int64_t now) {
  metrics.attempt(p.config.name, out.kind, x.plan->channel, p.facts.cost_per_message);
  AnswerFacts f = facts_of(resp, error_class_of(out.kind, resp));
  // The parts an accepted SMS went in: its text rendered again (as start_one did) and counted.
  if (out.kind == OutcomeKind::accepted && x.plan->channel == "sms") {
    f.segments = sms_segments(render_template(x.plan->template_text, x.n.data_json)).segments;
  }
  // An unusable address is suppressed: read it now if the attempt did not record it.
  const bool unusable = out.kind == OutcomeKind::recipient_invalid || out.kind == OutcomeKind::recipient_opted_out;
  if (unusable && x.d.address.empty()) f.address = p.adapter->address_for(x.n, x.d.channel);
  Step s = machine.answered(x, p.facts, out, f, now);
  apply(x, s, true, pending_writes);
  // The provider failed when it did not take it for its own reasons, not the recipient's.
  record_outcome(p, out.kind != OutcomeKind::retryable && out.kind != OutcomeKind::permanent, resp, now);
}

void Engine::Impl::on_response(ProviderSlot& p, Id id, http::Response resp) {
  count.in_flight.fetch_sub(1);
  --p.in_flight;  // before anything else: the slot is free whatever became of the notification
  metrics.request(p.config.name, resp.latency);
  auto it = active.find(id);
  if (it == active.end()) return;
  Delivery& x = it->second;
  answered(x, p, p.adapter->classify(resp), resp, clock->now_ms());
  post_pump();
}

void Engine::Impl::on_batch_response(ProviderSlot& p, const std::vector<Id>& members, http::Response resp) {
  --p.in_flight;
  metrics.request(p.config.name, resp.latency);
  std::vector<Outcome> outcomes = p.adapter->classify_batch(resp, members.size());
  const std::int64_t now = clock->now_ms();
  for (std::size_t i = 0; i < members.size(); ++i) {
    count.in_flight.fetch_sub(1);
    auto it = active.find(members[i]);
    if (it == active.end()) continue;
    const Outcome out = i < outcomes.size() ? std::move(outcomes[i]) : Outcome{};
    Delivery& x = it->second;
    if (members.size() > 1 && out.kind == OutcomeKind::permanent) {
      // One bad member can make the provider refuse the whole request: each goes again alone.
      Step s = machine.batch_refused(x, p.facts, out, facts_of(resp));
      apply(x, s, true, pending_writes);
      continue;
    }
    answered(x, p, out, resp, now);
  }
  post_pump();
}

void Engine::Impl::on_in_doubt_lookup(ProviderSlot& p, Id id, const std::string& text, http::Response resp) {
  count.in_flight.fetch_sub(1);
  --p.in_flight;
  auto it = active.find(id);
  if (it == active.end()) return;
  Delivery& x = it->second;
  const std::string no_id;
  const LookupResult found = p.adapter->parse_lookup(resp, LookupContext{x.n, text, no_id, x.attempt_started_ms});
  record_outcome(p, resp.status != 0 && resp.status < 500 && resp.status != 429, resp, clock->now_ms());
  Step s = machine.looked_up(x, p.facts, found, facts_of(resp), clock->now_ms());
  apply(x, s, true, pending_writes);
  flush_writes();
  post_pump();
}

}  // namespace herald
