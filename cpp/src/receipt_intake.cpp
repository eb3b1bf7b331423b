// Receipt intake: providers' delivery callbacks (POST <public_url>/receipts/<provider>). Each is
// verified (signature) and parsed on the receipt server's thread, then applied on the loop:
// receipts only move forward (decide_receipt), and one about an attempt in doubt settles it.
#include <boost/asio/post.hpp>

#include "engine_impl.hpp"
#include "herald/errors.hpp"
#include "herald/receipts.hpp"

namespace herald {

namespace {

using Rows = std::vector<std::optional<StoredNotification>>;

/// The stored rows of the receipts' notifications, read off the loop (none for an id of 0).
std::shared_ptr<Rows> rows_of(DeliveryStore& store, const std::vector<Receipt>& receipts) {
  auto rows = std::make_shared<Rows>();
  rows->reserve(receipts.size());
  for (const Receipt& r : receipts) rows->push_back(r.notification_id == 0 ? std::nullopt : store.get(r.notification_id));
  return rows;
}

const StoredNotification* row_at(const Rows& rows, std::size_t i) { return rows[i] ? &*rows[i] : nullptr; }

}  // namespace

void Engine::Impl::start_receipt_server() {
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

/// A rejected receipt changes nothing; it is counted by kind and logged in aggregate by the
/// housekeeping timer (events of notification 0), so a flood of forgeries cannot fill the disk.
/// Any thread.
void Engine::Impl::reject_receipt(const std::string& provider, int status, const std::string& reason, const std::string& remote) {
  count.receipts_rejected.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(tally_mutex);
  rejections.add(provider, status, reason, remote, clock->now_ms());
}

/// Loop thread: writes the refused receipts counted since the last call.
void Engine::Impl::log_rejections() {
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

void Engine::Impl::arm_housekeeping() {
  if (closing.load()) return;
  housekeeping_timer.arm_at(clock->now_ms() + options.rejection_log_interval.count());  // fires log_rejections()
}

/// On the receipt server's thread: checks and reads everything a receipt needs (the adapter's
/// receipt methods are const and touch configuration only; the store's reads are thread-safe),
/// then hands the result to the loop, so the loop never waits on SQLite for a receipt.
void Engine::Impl::on_receipt(http::ServerRequest req, http::Respond respond) {
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
  ProviderSlot& p = pit->second;
  InboundRequest in;
  in.method = std::move(req.method);
  in.url = public_url + req.target;  // what the provider called, and signed (Twilio)
  in.path = std::move(req.path);
  in.query = std::move(req.query);
  in.headers = std::move(req.headers);
  in.body = std::move(req.body);
  in.now_ms = clock->now_ms();
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
  auto rows = rows_of(*store, receipts);
  ProviderSlot* pp = &p;
  asio::post(io, [this, pp, rows, rs = std::move(receipts), done = std::move(respond)]() mutable {
    // Answered once applied: a crash before this makes the provider resend.
    auto answer = [pp, done = std::move(done)]() mutable {
      http::ServerResponse ok;
      ok.status = static_cast<unsigned>(pp->adapter->receipt_ok_status());
      ok.content_type.clear();
      done(std::move(ok));
    };
    std::vector<Receipt> again;
    for (std::size_t i = 0; i < rs.size(); ++i) {
      const bool applied = apply_receipt(*pp, rs[i], false, row_at(*rows, i));
      if (!applied && rs[i].notification_id != 0 && !active.contains(rs[i].notification_id)) again.push_back(rs[i]);
    }
    flush_writes();
    if (again.empty()) return answer();
    // Refused about a notification the loop no longer holds: it may have finished after its row
    // was read, with its final write not yet committed (a receipt a few ms after the answer). Once
    // everything queued so far is committed, its row is read again and the receipt applied once
    // more (refused again if it really is not ours).
    store->submit(WriteBatch{}, [this, pp, again = std::move(again), answer = std::move(answer)](
                                    std::exception_ptr, WriteBatch&) mutable {
      auto fresh = rows_of(*store, again);
      asio::post(io, [this, pp, fresh, again = std::move(again), answer = std::move(answer)]() mutable {
        for (std::size_t i = 0; i < again.size(); ++i) apply_receipt(*pp, again[i], false, row_at(*fresh, i));
        flush_writes();
        answer();
      });
    });
  });
}

/// Records one genuine receipt (from a callback, or from a status query when `from_lookup`).
/// Returns whether it changed anything.
bool Engine::Impl::apply_receipt(ProviderSlot& p, const Receipt& r, bool from_lookup, const StoredNotification* row) {
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
  count.receipts.fetch_add(1, std::memory_order_relaxed);
  Event e = make_event(n, d.attempt, act.event);
  e.ts_us = clock->now_us();
  e.provider = p.config.name;
  e.detail = r.provider_status.empty() ? std::string(to_string(r.status)) : r.provider_status;
  if (!r.error_code.empty()) e.detail += " (error " + r.error_code + ")";
  if (from_lookup) e.detail += "; from a status query";
  pending_writes.events.push_back(std::move(e));
  if (act.receipt != ReceiptState::none) {
    const std::int64_t at = clock->now_ms();
    pending_writes.receipts.push_back({id, act.receipt, at, false});
    if (recent_receipts.size() > 100'000) recent_receipts.clear();  // only bridges the commit delay
    recent_receipts[id] = act.receipt;
    reconcile_checks.erase(id);
    reconcile_next_ms.erase(id);
    if (auto it = active.find(id); it != active.end()) {
      it->second.d.receipt = act.receipt;
      it->second.d.receipt_at_ms = at;
    }
    if (n.parent_id != 0) step_receipt(n.parent_id, n.step, act.receipt, pending_writes);
  }
  if (act.suppress) {
    add_suppression(SuppressionRequest{d.channel, d.address, *act.suppress,
                                       r.provider_status + (r.error_code.empty() ? "" : " " + r.error_code), p.config.name},
                    id);
  }
  // A receipt for an attempt a crash left in doubt proves it reached the provider: complete the
  // notification instead of asking again or resending.
  if (auto it = active.find(id); it != active.end()) {
    Delivery& x = it->second;
    const bool was_outstanding = x.outstanding();
    Step s = machine.receipt_in_doubt(x, p.facts, r, clock->now_ms());
    apply(x, s, was_outstanding, pending_writes);
  }
  return true;
}

}  // namespace herald
