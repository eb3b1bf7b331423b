// One group commit (Store::apply): everything queued since the last commit in one transaction,
// each batch in its own savepoint, the events of one notification in one row; then the log's
// lines, the journal's spent records and each submitter's answer. And retention's passes
// (Store::prune), which run as chunks inside those commits.
#include <array>
#include <future>
#include <limits>

#include "herald/clock.hpp"
#include "herald/event_rows.hpp"
#include "store_db.hpp"

namespace herald {

using namespace store_detail;

/// One retention step run inside a group commit: deletes up to `limit` final notifications
/// created before `before_id` and last updated before `before_ms`, and their events.
struct Store::PruneChunk {
  Id before_id = std::numeric_limits<Id>::max();
  std::int64_t before_ms = std::numeric_limits<std::int64_t>::max();
  std::int64_t system_before_us = 0;  ///< also delete system events (id 0) older than this (0 = none)
  std::size_t limit = 2000;
  std::uint64_t notifications = 0;  ///< results, written by the writer thread
  std::uint64_t events = 0;
};

namespace {

void run_prune_chunk(sqlite3_stmt* rows, sqlite3_stmt* events, sqlite3_stmt* system_events,
                     std::int64_t before_id, std::int64_t before_ms, std::int64_t limit, std::int64_t system_before_us,
                     std::uint64_t& deleted_rows, std::uint64_t& deleted_events,
                     const std::function<void(const char*)>& fail) {
  sqlite3_bind_int64(rows, 1, before_id);
  sqlite3_bind_int64(rows, 2, before_ms);
  sqlite3_bind_int64(rows, 3, limit);
  std::int64_t lo = std::numeric_limits<std::int64_t>::max(), hi = 0;
  int rc = 0;
  while ((rc = sqlite3_step(rows)) == SQLITE_ROW) {
    const std::int64_t id = sqlite3_column_int64(rows, 0);
    lo = std::min(lo, id);
    hi = std::max(hi, id);
    ++deleted_rows;
  }
  sqlite3_reset(rows);
  if (rc != SQLITE_DONE) fail("prune notifications");
  // Each deleted row returns how many earlier events it packed (NULL: none).
  auto count_deleted = [&](sqlite3_stmt* s, const char* what) {
    int step_rc = 0;
    while ((step_rc = sqlite3_step(s)) == SQLITE_ROW) {
      deleted_events += 1 + static_cast<std::uint64_t>(std::max<sqlite3_int64>(0, sqlite3_column_int64(s, 0)));
    }
    sqlite3_reset(s);
    if (step_rc != SQLITE_DONE) fail(what);
  };
  if (hi > 0) {
    sqlite3_bind_int64(events, 1, lo);
    sqlite3_bind_int64(events, 2, hi);
    count_deleted(events, "prune events");
  }
  if (system_before_us > 0) {
    sqlite3_bind_int64(system_events, 1, system_before_us);
    count_deleted(system_events, "prune system events");
  }
}

}  // namespace

void Store::Db::insert_rows(const std::vector<Notification>& rows, std::int64_t now) const {
  step_rows(rows.size(), insert_many.get(), insert.get(), "insert notification",
            [&](sqlite3_stmt* s, std::size_t i, int row) { bind_insert(s, rows[i], now, row); });
}

void Store::Db::insert_event_rows(const std::vector<std::span<const Event* const>>& groups) const {
  std::array<std::string, rows_per_statement> more;  // bound as they are: alive until the step
  step_rows(groups.size(), event_many.get(), event.get(), "insert event", [&](sqlite3_stmt* s, std::size_t i, int row) {
    std::string& packed = more[static_cast<std::size_t>(row)];
    packed = pack_earlier_events(groups[i]);
    bind_event(s, *groups[i].back(), packed, row);
  });
}

bool Store::apply(std::vector<Pending>& work) {
  Db& db = *write_db_;
  std::vector<std::exception_ptr> errors(work.size());
  const std::int64_t now = now_ms();
  std::exception_ptr fault;
  std::vector<const Event*> events;  // of the batches applied, to be written per notification
  std::int64_t raised_ceiling = 0;
  try {
    db.step_done(db.begin.get(), "begin");
    for (std::size_t i = 0; i < work.size(); ++i) {
      const WriteBatch& b = work[i].batch;
      if (b.empty() && !work[i].prune && !work[i].probe) continue;
      db.step_done(db.savepoint.get(), "savepoint");
      try {
        db.insert_rows(b.inserts, now);
        for (const StateUpdate& u : b.updates) {
          sqlite3_stmt* s = db.update.get();
          const DeliveryState& d = u.delivery;
          sqlite3_bind_int(s, 1, static_cast<int>(d.state));
          sqlite3_bind_int(s, 2, d.attempt);
          sqlite3_bind_int(s, 3, d.provider_index);
          sqlite3_bind_int(s, 4, d.provider_attempt);
          sqlite3_bind_int64(s, 5, d.next_at_ms);
          sqlite3_bind_int64(s, 6, now);
          bind_text(s, 7, d.provider, true);
          bind_text(s, 8, d.provider_message_id, true);
          bind_text(s, 9, d.last_error, true);
          sqlite3_bind_int(s, 10, d.in_doubt ? 1 : 0);
          bind_text(s, 11, d.channel, true);
          bind_text(s, 12, d.address, true);
          sqlite3_bind_int64(s, 13, d.accepted_at_ms);
          sqlite3_bind_double(s, 14, d.cost);
          sqlite3_bind_int64(s, 15, u.id);
          db.step_done(s, "update notification");
        }
        for (const ReceiptUpdate& r : b.receipts) {
          sqlite3_stmt* s = db.receipt.get();
          bind_text(s, 1, to_string(r.receipt), true);
          sqlite3_bind_int64(s, 2, r.at_ms);
          sqlite3_bind_int64(s, 3, r.id);
          sqlite3_bind_int(s, 4, r.only_if_none ? 1 : 0);
          db.step_done(s, "record receipt");
        }
        for (const Suppression& x : b.suppressions) {
          if (x.remove) {
            sqlite3_stmt* s = db.unsuppress.get();
            bind_text(s, 1, x.channel);
            bind_text(s, 2, x.address);
            db.step_done(s, "remove suppression");
            continue;
          }
          sqlite3_stmt* s = db.suppress.get();
          bind_text(s, 1, x.channel);
          bind_text(s, 2, x.address);
          bind_text(s, 3, to_string(x.reason));
          bind_text(s, 4, x.detail, true);
          bind_text(s, 5, x.provider, true);
          sqlite3_bind_int64(s, 6, x.notification_id);
          sqlite3_bind_int64(s, 7, x.at_ms);
          db.step_done(s, "record suppression");
        }
        if (work[i].probe) {
          sqlite3_bind_int64(db.probe.get(), 1, now);
          db.step_done(db.probe.get(), "probe");
        }
        if (PruneChunk* c = work[i].prune.get()) {
          c->notifications = 0;
          c->events = 0;
          run_prune_chunk(db.prune_rows.get(), db.prune_events.get(), db.prune_system_events.get(),
                          c->before_id, c->before_ms, static_cast<std::int64_t>(c->limit), c->system_before_us,
                          c->notifications, c->events, [&db](const char* what) { db.fail(what); });
        }
        db.step_done(db.release.get(), "release");
        for (const Event& e : b.events) events.push_back(&e);  // written below, once per notification
      } catch (const SqliteError& ex) {
        if (!ex.batch_only()) throw;  // the disk or the file, not this batch: the transaction fails
        errors[i] = std::current_exception();
        db.step_done(db.rollback_to.get(), "rollback to");
        db.step_done(db.release.get(), "release");
      }
    }
    db.insert_event_rows(group_for_rows(events));
    std::int64_t highest = 0;  // of the seqs of its intake events (logged only) and its events
    for (const Pending& p : work) highest = std::max(highest, p.last_seq);
    raised_ceiling = raise_seq_ceiling(highest);
    db.step_done(db.commit.get(), "commit");
  } catch (...) {
    fault = std::current_exception();
    sqlite3_step(db.rollback.get());  // SQLite may have rolled back already (full disk): then a no-op
    sqlite3_reset(db.rollback.get());
  }
  if (!fault && raised_ceiling != 0) seq_ceiling_ = raised_ceiling;
  if (fault) {
    // Nothing of this transaction is on disk. Submitters that wait on the outcome hear of it now;
    // the engine's own records stay held, in order, for the next attempt.
    std::string message;
    try {
      std::rethrow_exception(fault);
    } catch (const std::exception& ex) {
      message = ex.what();
    }
    const auto err = std::make_exception_ptr(StoreError("cannot write to " + db_path_.string() + ": " + message));
    std::vector<Pending> held;
    for (auto& p : work) {
      if (p.on_fault == OnFault::hold) {
        held.push_back(std::move(p));
      } else if (p.done) {
        p.done(err, p.batch);
      }
    }
    work = std::move(held);
    note_fault(message, work.size());
    return false;
  }
  for (std::size_t i = 0; i < work.size(); ++i) {
    Pending& p = work[i];
    const std::exception_ptr& err = errors[i];
    if (!err) {
      std::int64_t seq = p.intake_seq;  // reserved in enqueue()
      for (const Notification& n : p.batch.inserts) log_intake(*log_, n, seq);
      for (const Event& e : p.batch.events) log_->append(e);
    }
    // Committed, or refused for itself (a constraint): either way the journal's record is spent.
    if (p.journal_ticket != 0) journal_done(p);
    if (journal_) {
      for (const std::uint64_t ticket : p.batch.settles) journal_->committed(ticket);
    }
  }
  log_->flush();
  // Submitters hear of the outcome only once the log holds the lines: whoever commits and then
  // reads the delivery log finds their batch, and every batch committed before it, there.
  for (std::size_t i = 0; i < work.size(); ++i) {
    if (work[i].done) work[i].done(errors[i], work[i].batch);
  }
  return true;
}

PruneResult Store::prune(const PruneLimits& limits) {
  PruneResult out;
  const std::size_t chunk = std::max<std::size_t>(1, limits.chunk);
  auto run = [&](std::shared_ptr<PruneChunk> c) {
    std::promise<void> promise;
    auto future = promise.get_future();
    Pending p;
    p.prune = c;
    p.on_fault = OnFault::fail;
    p.done = [&promise](std::exception_ptr err, WriteBatch&) {
      if (err) {
        promise.set_exception(err);
      } else {
        promise.set_value();
      }
    };
    enqueue(std::move(p));
    future.get();
    out.notifications += c->notifications;
    out.events += c->events;
    return c->notifications;
  };
  if (limits.older_than_ms > 0) {
    bool first = true;
    for (;;) {
      auto c = std::make_shared<PruneChunk>();
      c->before_id = limits.older_than_ms << 16;  // ids are (ms << 16 | counter): created before the cut
      c->before_ms = limits.older_than_ms;
      c->system_before_us = first ? limits.older_than_ms * 1000 : 0;
      c->limit = chunk;
      first = false;
      if (run(c) < chunk || (limits.stop != nullptr && limits.stop->load())) break;
    }
  }
  if (limits.max_db_bytes > 0) {
    // Pages freed by a chunk go to the file's free list and are reused, so live pages are what
    // count. Prune to 90% of the limit so the next pass does not start at once.
    const std::int64_t target = limits.max_db_bytes / 10 * 9;
    if (db_bytes() > limits.max_db_bytes) {
      while (db_bytes() > target) {
        auto c = std::make_shared<PruneChunk>();
        c->limit = chunk;
        if (run(c) == 0) break;  // only unfinished notifications left
        if (limits.stop != nullptr && limits.stop->load()) break;
      }
    }
  }
  out.db_bytes = db_bytes();
  restore_reserve();  // given up to open on a full disk: set aside again once there is room
  return out;
}

}  // namespace herald
