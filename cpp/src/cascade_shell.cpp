// Plans with many steps, the shell around the machine's cascade transitions (cpp/src/cascade.cpp):
// each started step becomes a delivery of its own (a copy of the parent with parent_id and step
// set, inserted in the same commit as the parent's step_started event), and how each ends, its
// receipts and the application's acknowledgements go back to the parent. Loop thread only.
#include "engine_impl.hpp"
#include "herald/errors.hpp"

namespace herald {

void Engine::Impl::coordinate(Delivery& parent, const Step& s, WriteBatch& into) {
  if (s.resume) {
    resume_cascade(parent, into);
    return;
  }
  const Id id = parent.n.id;
  for (const std::size_t k : s.start_steps) {
    auto it = active.find(id);
    if (it == active.end() || it->second.phase != Phase::coordinating) return;  // ended meanwhile
    start_step(it->second, k, into);
  }
  if (s.wake_at_ms != 0 && active.count(id) != 0) scheduler.defer(id, s.wake_at_ms);
}

void Engine::Impl::start_step(Delivery& parent, std::size_t k, WriteBatch& into) {
  Cascade& c = *parent.cascade;
  Delivery x;
  x.n = parent.n;
  x.n.id = ids.next();
  x.n.parent_id = parent.n.id;
  x.n.step = static_cast<int>(k);
  x.n.idempotency_key.clear();  // the parent holds the key and the order
  x.n.ordering_key.clear();
  x.n.send_at_ms = 0;
  x.n.created_at_ms = clock->now_ms();
  x.plan = own_step(c.plan.steps[k]);
  x.routed = true;
  x.has_fallback = c.group_end(k) < c.steps.size();
  c.ids[k] = x.n.id;
  into.inserts.push_back(x.n);
  const Id id = x.n.id;
  const Priority pri = x.n.priority;
  active.emplace(id, std::move(x));
  count.active.fetch_add(1);
  scheduler.add(id, pri, 0);
  post_pump();
}

void Engine::Impl::resume_cascade(Delivery& parent, WriteBatch& into) {
  const Id id = parent.n.id;
  std::vector<StepRecord> records;
  for (auto& row : store->steps_of(id)) {
    StepRecord r;
    r.step = row.notification.step;
    r.id = row.notification.id;
    r.state = row.delivery.state;
    r.finished = is_terminal(r.state) && active.count(r.id) == 0;
    r.receipt = row.delivery.receipt;
    r.error = row.delivery.last_error;
    r.started_ms = row.notification.created_at_ms;
    records.push_back(std::move(r));
  }
  // Steps that ended after the restart, before this parent was routed: their rows may not be
  // committed yet, so what the loop saw wins.
  if (auto early = early_step_ends.find(id); early != early_step_ends.end()) {
    for (const StepRecord& e : early->second) {
      bool found = false;
      for (StepRecord& r : records) {
        if (r.id == e.id) {
          r = e;
          found = true;
        }
      }
      if (!found) records.push_back(e);
    }
    early_step_ends.erase(early);
  }
  Step s = machine.resume(parent, records, clock->now_ms());
  apply(parent, s, false, into);
}

void Engine::Impl::step_ended(Id parent_id, const StepRecord& r, WriteBatch& into) {
  auto it = active.find(parent_id);
  if (it == active.end()) return;  // the plan ended already (an earlier step succeeded)
  Delivery& parent = it->second;
  if (parent.phase != Phase::coordinating) {
    early_step_ends[parent_id].push_back(r);  // not routed again since a restart
    return;
  }
  Step s = machine.step_finished(parent, r, clock->now_ms());
  apply(parent, s, false, into);
}

void Engine::Impl::step_receipt(Id parent_id, int step, ReceiptState receipt, WriteBatch& into) {
  auto it = active.find(parent_id);
  if (it == active.end() || it->second.phase != Phase::coordinating) return;
  Step s = machine.step_receipt(it->second, step, receipt, clock->now_ms());
  apply(it->second, s, false, into);
}

void Engine::Impl::acknowledge(Id id, const std::string& channel) {
  if (!known_channel(channel)) {
    throw ValidationError("channel", "unknown channel '" + channel + "' (known: sms, email, push, chat, webhook)");
  }
  require_writable("acknowledge");
  auto row = store->get(id);
  if (!row) {
    store->flush();
    row = store->get(id);
  }
  if (!row || row->notification.parent_id != 0) throw NotFound("notification " + std::to_string(id) + " not found");
  on_loop([&] {
    Event e = make_event(row->notification, 0, EventKind::acknowledged);
    e.channel = channel;
    e.ts_us = clock->now_us();
    e.detail = "read on " + channel + ", as the application reports";
    pending_writes.events.push_back(std::move(e));
    auto it = active.find(id);
    if (it != active.end() && it->second.phase == Phase::coordinating) {
      Step s = machine.acknowledged(it->second, channel, clock->now_ms());
      apply(it->second, s, false, pending_writes);
    }
    flush_writes();
    post_pump();
  });
}

bool Engine::Impl::cancel_steps(Delivery& parent) {
  // Like a notification with one step, a plan cannot be cancelled while a request of it is on
  // the wire: its answer decides.
  const Cascade& c = *parent.cascade;
  for (const Id step : c.ids) {
    auto it = active.find(step);
    if (step != 0 && it != active.end() && it->second.awaiting_answer()) return false;
  }
  const std::vector<Id> steps = c.ids;
  Step s = machine.cancel(parent);  // nothing more starts; it ends once the running steps do
  apply(parent, s, false, pending_writes);
  for (const Id step : steps) {
    auto it = active.find(step);
    if (step == 0 || it == active.end()) continue;
    Delivery& x = it->second;
    const bool was_outstanding = x.outstanding();
    Step cs = machine.cancel(x);
    apply(x, cs, was_outstanding, pending_writes);
  }
  return true;
}

std::string Engine::Impl::unservable(const ProviderSlot& p, const Delivery& x) const {
  if (!p.adapter->serves(x.plan->channel)) {
    return "a " + p.config.kind + " provider does not serve the " + x.plan->channel + " channel";
  }
  if (p.adapter->needs_address() && p.adapter->address_for(x.n, x.plan->channel).empty()) {
    return "the recipient has no address for it on " + x.plan->channel;
  }
  return {};
}

}  // namespace herald
