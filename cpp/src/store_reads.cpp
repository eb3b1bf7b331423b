// The reader connection's queries: rows, events, traces, suppressions, idempotency keys and the
// file's size. Committed data only (WAL lets them read while the writer writes), one at a time
// (read_mutex_); get() also finds rows journaled and not yet committed.
#include "herald/event_rows.hpp"
#include "store_db.hpp"

namespace herald {

using namespace store_detail;

namespace {

/// A text column as it lies in SQLite's buffer (valid until the next step); "" for NULL.
std::string_view column_view(sqlite3_stmt* s, int col) {
  const auto* p = sqlite3_column_text(s, col);
  return p == nullptr ? std::string_view() : std::string_view(reinterpret_cast<const char*>(p),
                                                              static_cast<std::size_t>(sqlite3_column_bytes(s, col)));
}

std::string column_text(sqlite3_stmt* s, int col) { return std::string(column_view(s, col)); }

StoredNotification read_row(sqlite3_stmt* s) {
  StoredNotification r;
  Notification& n = r.notification;
  n.id = sqlite3_column_int64(s, 0);
  n.tenant = column_text(s, 1);
  n.type = column_text(s, 2);
  n.recipient_id = column_text(s, 3);
  n.recipient_json = column_text(s, 4);
  n.data_json = column_text(s, 5);
  n.priority = static_cast<Priority>(sqlite3_column_int(s, 6));
  n.idempotency_key = column_text(s, 7);
  n.ordering_key = column_text(s, 8);
  n.send_at_ms = sqlite3_column_int64(s, 9);
  n.expires_at_ms = sqlite3_column_int64(s, 10);
  n.created_at_ms = sqlite3_column_int64(s, 11);
  r.content_hash = static_cast<std::uint64_t>(sqlite3_column_int64(s, 12));
  DeliveryState& d = r.delivery;
  d.state = static_cast<State>(sqlite3_column_int(s, 13));
  d.attempt = sqlite3_column_int(s, 14);
  d.provider_index = sqlite3_column_int(s, 15);
  d.provider_attempt = sqlite3_column_int(s, 16);
  d.next_at_ms = sqlite3_column_int64(s, 17);
  r.updated_at_ms = sqlite3_column_int64(s, 18);
  d.provider = column_text(s, 19);
  d.provider_message_id = column_text(s, 20);
  d.last_error = column_text(s, 21);
  d.in_doubt = sqlite3_column_int(s, 22) != 0;
  d.channel = column_text(s, 23);
  d.address = column_text(s, 24);
  d.accepted_at_ms = sqlite3_column_int64(s, 25);
  d.receipt = parse_receipt_state(column_text(s, 26));
  d.receipt_at_ms = sqlite3_column_int64(s, 27);
  d.cost = sqlite3_column_double(s, 28);
  n.parent_id = sqlite3_column_int64(s, 29);
  n.step = sqlite3_column_int(s, 30);
  return r;
}

/// Every row a bound statement selects (select_columns), then the statement reset for reuse.
std::vector<StoredNotification> read_rows(sqlite3_stmt* s) {
  std::vector<StoredNotification> out;
  while (sqlite3_step(s) == SQLITE_ROW) out.push_back(read_row(s));
  sqlite3_reset(s);
  return out;
}

}  // namespace

std::int64_t Store::db_bytes() {
  std::lock_guard lock(read_mutex_);
  const std::int64_t pages = Db::read_integer(read_db_->page_count.get());
  const std::int64_t free_pages = Db::read_integer(read_db_->freelist_count.get());
  return (pages - free_pages) * Db::read_integer(read_db_->page_size.get());
}

std::optional<StoredNotification> Store::get(Id id) {
  {
    // Journaled and not yet committed: queued, as the commit will say. Looked up first, so a row
    // committed meanwhile is found in SQLite (it leaves this map only after its commit).
    std::lock_guard lock(journaled_mutex_);
    if (auto it = journaled_.find(id); it != journaled_.end()) return it->second;
  }
  std::lock_guard lock(read_mutex_);
  sqlite3_stmt* s = read_db_->get.get();
  sqlite3_bind_int64(s, 1, id);
  std::optional<StoredNotification> out;
  if (sqlite3_step(s) == SQLITE_ROW) out = read_row(s);
  sqlite3_reset(s);
  return out;
}

std::optional<IdempotencyHit> Store::find_idempotent(const std::string& tenant, const std::string& type,
                                                     const std::string& recipient_id, const std::string& key) {
  std::lock_guard lock(read_mutex_);
  sqlite3_stmt* s = read_db_->find_idem.get();
  bind_text(s, 1, tenant);
  bind_text(s, 2, type);
  bind_text(s, 3, recipient_id);
  bind_text(s, 4, key);
  std::optional<IdempotencyHit> out;
  if (sqlite3_step(s) == SQLITE_ROW) {
    out = IdempotencyHit{sqlite3_column_int64(s, 0), static_cast<std::uint64_t>(sqlite3_column_int64(s, 1)),
                         static_cast<State>(sqlite3_column_int(s, 2))};
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return out;
}

void Store::for_each_idempotency_key(const KeyVisitor& each) {
  std::lock_guard lock(read_mutex_);
  // Read from the partial unique index alone (it holds every column asked for).
  const Stmt stmt = read_db_->prepare(
      "SELECT tenant, type, recipient_id, idempotency_key FROM notifications "
      "INDEXED BY notifications_idempotency_by_key WHERE idempotency_key IS NOT NULL");
  sqlite3_stmt* s = stmt.get();
  int rc = 0;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) each(column_view(s, 0), column_view(s, 1), column_view(s, 2), column_view(s, 3));
  if (rc != SQLITE_DONE) read_db_->fail("read idempotency keys");
}

std::vector<Event> Store::events(Id id) {
  std::lock_guard lock(read_mutex_);
  sqlite3_stmt* s = read_db_->events.get();
  sqlite3_bind_int64(s, 1, id);
  std::vector<Event> out;
  while (sqlite3_step(s) == SQLITE_ROW) {
    Event e;
    e.notification_id = sqlite3_column_int64(s, 0);
    e.seq = sqlite3_column_int64(s, 1);
    e.ts_us = sqlite3_column_int64(s, 2);
    e.kind = parse_event_kind(column_text(s, 3));
    e.attempt = sqlite3_column_int(s, 4);
    e.provider = column_text(s, 5);
    e.latency_us = sqlite3_column_int64(s, 6);
    e.http_status = sqlite3_column_int(s, 7);
    e.detail = column_text(s, 8);
    e.step = sqlite3_column_int(s, 9);
    if (sqlite3_column_type(s, 10) != SQLITE_NULL) {
      try {
        unpack_earlier_events(column_view(s, 10), id, out);
      } catch (...) {
        sqlite3_reset(s);
        throw;
      }
    }
    out.push_back(std::move(e));
  }
  sqlite3_reset(s);
  return out;
}

std::vector<Event> Store::trace(Id id) {
  auto row = get(id);
  if (!row) throw NotFound("notification " + std::to_string(id) + " not found");
  const Notification& n = row->notification;
  std::vector<Event> out;
  for (const EventKind kind : {EventKind::received, EventKind::queued}) {
    Event e = make_intake_event(n, kind, 0, n.created_at_ms * 1000);
    if (kind == EventKind::queued) {
      e.detail = std::string(to_string(n.priority)) + " lane";
      if (n.send_at_ms > n.created_at_ms) e.detail += ", due at " + std::to_string(n.send_at_ms);
      if (!n.ordering_key.empty()) e.detail += ", ordering key '" + n.ordering_key + "'";
    }
    out.push_back(std::move(e));
  }
  for (auto& e : events(id)) {
    e.type = n.type;
    e.tenant = n.tenant;
    e.priority = n.priority;
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<StoredNotification> Store::load_unfinished() {
  std::lock_guard lock(read_mutex_);
  sqlite3_stmt* s = read_db_->unfinished.get();
  return read_rows(s);
}

std::vector<StoredNotification> Store::list_by_state(State state, std::size_t limit) {
  std::lock_guard lock(read_mutex_);
  sqlite3_stmt* s = read_db_->by_state.get();
  sqlite3_bind_int(s, 1, static_cast<int>(state));
  sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(limit));
  return read_rows(s);
}

std::vector<StoredNotification> Store::steps_of(Id parent) {
  std::lock_guard lock(read_mutex_);
  sqlite3_stmt* s = read_db_->steps_of.get();
  sqlite3_bind_int64(s, 1, parent);
  return read_rows(s);
}

std::vector<StoredNotification> Store::list_by_recipient(const std::string& recipient_id, std::size_t limit) {
  std::lock_guard lock(read_mutex_);
  sqlite3_stmt* s = read_db_->by_recipient.get();
  bind_text(s, 1, recipient_id);
  sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(limit));
  return read_rows(s);
}

std::vector<Suppression> Store::suppressions(std::size_t limit) {
  std::lock_guard lock(read_mutex_);
  sqlite3_stmt* s = read_db_->suppressions.get();
  sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(limit));
  std::vector<Suppression> out;
  while (sqlite3_step(s) == SQLITE_ROW) {
    Suppression x;
    x.channel = column_text(s, 0);
    x.address = column_text(s, 1);
    x.reason = parse_suppression_reason(column_text(s, 2));
    x.detail = column_text(s, 3);
    x.provider = column_text(s, 4);
    x.notification_id = sqlite3_column_int64(s, 5);
    x.at_ms = sqlite3_column_int64(s, 6);
    out.push_back(std::move(x));
  }
  sqlite3_reset(s);
  return out;
}

std::vector<StoredNotification> Store::awaiting_receipt(std::int64_t before_ms, const std::vector<std::string>& providers,
                                                        std::size_t limit) {
  if (providers.empty()) return {};
  std::string sql = std::string("SELECT ") + select_columns +
                    " FROM notifications WHERE state = 4 AND receipt IS NULL AND accepted_at > 0 AND accepted_at < ? "
                    "AND provider IN (";
  for (std::size_t i = 0; i < providers.size(); ++i) sql += i == 0 ? "?" : ",?";
  sql += ") ORDER BY accepted_at LIMIT ?";
  std::lock_guard lock(read_mutex_);
  Stmt stmt = read_db_->prepare(sql);  // rare (one sweep per interval): not worth caching
  sqlite3_stmt* s = stmt.get();
  int col = 1;
  sqlite3_bind_int64(s, col++, before_ms);
  for (const auto& p : providers) bind_text(s, col++, p);
  sqlite3_bind_int64(s, col, static_cast<sqlite3_int64>(limit));
  return read_rows(s);
}

Id Store::max_id() {
  std::lock_guard lock(read_mutex_);
  return Db::read_integer(read_db_->max_id.get());
}

}  // namespace herald
