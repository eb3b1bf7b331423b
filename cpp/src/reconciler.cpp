// The reconciler: a delivery accepted by a provider that sends receipts, still without a final
// receipt after reconcile_after, is looked up through the provider's status API, less and less
// often, and marked "unconfirmed" after five tries.
#include <boost/asio/post.hpp>

#include "engine_impl.hpp"

namespace herald {

void Engine::Impl::arm_reconcile() {
  if (closing.load()) return;
  bool any = false;
  for (const auto& [name, p] : providers) any = any || (p.facts.has_lookup && p.facts.has_receipts);
  if (!any) return;
  reconcile_timer.arm_at(clock->now_ms() + options.reconcile_interval.count());  // fires reconcile_sweep()
}

/// Asks providers about deliveries accepted long ago that never got a final receipt.
void Engine::Impl::reconcile_sweep() {
  const std::int64_t now = clock->now_ms();
  std::vector<std::string> names;
  for (const auto& [name, p] : providers) {
    if (p.facts.has_lookup && p.facts.has_receipts) names.push_back(name);
  }
  auto rows = store->awaiting_receipt(now - options.reconcile_after.count(), names, 500);
  for (auto& row : rows) {
    const Id id = row.notification.id;
    if (reconciling.count(id) != 0) continue;
    if (auto it = reconcile_next_ms.find(id); it != reconcile_next_ms.end() && it->second > now) continue;
    ProviderSlot& p = providers.at(row.delivery.provider);
    const std::string text;
    auto req = p.adapter->build_lookup(
        LookupContext{row.notification, text, row.delivery.provider_message_id, row.delivery.accepted_at_ms});
    if (!req) continue;
    reconciling.insert(id);
    count.lookups.fetch_add(1, std::memory_order_relaxed);
    ProviderSlot* pp = &p;
    http->submit(std::move(*req), [this, pp, row = std::move(row)](http::Response&& resp) mutable {
      asio::post(io, [this, pp, row = std::move(row), r = std::move(resp)]() mutable {
        on_reconcile_lookup(*pp, row, r);
      });
    });
  }
}

void Engine::Impl::on_reconcile_lookup(ProviderSlot& p, const StoredNotification& row, const http::Response& resp) {
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
    if (apply_receipt(p, r, true, &row)) count.reconciled.fetch_add(1, std::memory_order_relaxed);
    if (recent_receipts.count(id) == 0) {
      // The answer was final but records no receipt of its own (an opt-out, or a stale answer):
      // close the row so it is not looked up again on every sweep.
      pending_writes.receipts.push_back(
          {id, r.status == ReceiptStatus::opted_out ? ReceiptState::failed : ReceiptState::unconfirmed, clock->now_ms(), true});
    }
    reconcile_checks.erase(id);
    reconcile_next_ms.erase(id);
    flush_writes();
    return;
  }
  // Not final yet, unknown to the provider, or no answer: ask again later, less and less often,
  // and give up after five tries (the receipt is then "unconfirmed").
  const int checks = ++reconcile_checks[id];
  Event e = make_event(row.notification, row.delivery.attempt, EventKind::lookup);
  e.ts_us = clock->now_us();
  e.provider = p.config.name;
  e.http_status = static_cast<int>(resp.status);
  e.detail = found.found == LookupResult::Found::yes ? "still " + found.receipt.provider_status
             : found.found == LookupResult::Found::no ? std::string("the provider does not know the message")
                                                      : "status query failed: " + found.error;
  if (checks >= 5) {
    e.detail += "; giving up: receipt unconfirmed";
    pending_writes.receipts.push_back({id, ReceiptState::unconfirmed, clock->now_ms(), true});
    reconcile_checks.erase(id);
    reconcile_next_ms.erase(id);
  } else {
    reconcile_next_ms[id] = clock->now_ms() + options.reconcile_interval.count() * (1LL << checks);
  }
  pending_writes.events.push_back(std::move(e));
  flush_writes();
}


}  // namespace herald
