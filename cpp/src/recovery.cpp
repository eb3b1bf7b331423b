// Recovery: at start, every unfinished notification in the store is resumed. One whose attempt
// was marked "sending" when the process stopped is in doubt (DeliveryMachine::recovered): the
// provider is asked before anything is resent, where it can answer.
#include "engine_impl.hpp"

namespace herald {

void Engine::Impl::recover() {
  // Every stored idempotency key into the intake's filter, before send() is open: a new key is
  // then known to be new without a store read (about 0.3 s per million keys, 1.4 MB of memory).
  {
    std::lock_guard lock(idempotency.mutex());
    store->for_each_idempotency_key([this](std::string_view tenant, std::string_view type, std::string_view recipient,
                                           std::string_view key) { idempotency.note_stored(tenant, type, recipient, key); });
  }
  auto rows = store->load_unfinished();
  WriteBatch batch;
  const std::int64_t now_us = clock->now_us();
  for (auto& row : rows) {
    Delivery x;
    x.n = std::move(row.notification);
    x.d = row.delivery;
    Step s = machine.recovered(x, row.updated_at_ms);
    for (auto& e : s.events) {
      if (e.kind == EventKind::in_doubt) count.in_doubt.fetch_add(1, std::memory_order_relaxed);
      e.ts_us = now_us;
      batch.events.push_back(std::move(e));
    }
    if (s.save) batch.updates.push_back({x.n.id, x.d});
    scheduler.add(x.n.id, x.n.priority, s.at_ms, x.n.ordering_key);
    const Id id = x.n.id;
    active.emplace(id, std::move(x));
    count.active.fetch_add(1, std::memory_order_relaxed);
    count.recovered.fetch_add(1, std::memory_order_relaxed);
  }
  // Held, not awaited: on a full disk the engine still opens and resumes; these wait for space.
  if (!batch.empty()) store->submit(std::move(batch));
}

}  // namespace herald
