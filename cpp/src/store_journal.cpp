// The intake journal's side of the store (herald/intake_journal.hpp): what a previous process
// journaled is inserted on open (replay_journal), intake and the loop's sending marks are made
// durable by an append instead of a commit (submit_journaled, journal_marks), and a record is
// spent once its rows are committed (journal_done).
#include <mutex>

#include "herald/clock.hpp"
#include "store_db.hpp"

namespace herald {

using namespace store_detail;

namespace {

/// Journaled and not yet committed beyond which their submitter waits for a commit again: rows
/// for send(), parts of records (rows, marks) for the loop's marks.
constexpr std::size_t max_journaled_rows = 10'000;

/// Whether the row of `u` shows its attempt (or a later one) committed; `attempt_of` reads a
/// row's attempt by id.
bool committed_before(sqlite3_stmt* attempt_of, const StateUpdate& u) {
  sqlite3_bind_int64(attempt_of, 1, u.id);
  // No row: retention deleted it since, so it was final (committed) long ago.
  const bool committed = sqlite3_step(attempt_of) != SQLITE_ROW || sqlite3_column_int(attempt_of, 0) >= u.delivery.attempt;
  sqlite3_reset(attempt_of);
  return committed;
}

}  // namespace

void Store::replay_journal() {
  std::vector<JournalRecord> records = journal_->recover();
  if (records.empty()) {
    journal_->discard_recovered();
    return;
  }
  Db& db = *write_db_;
  const std::int64_t now = now_ms();
  std::vector<const Notification*> inserted;
  db.step_done(db.begin.get(), "begin");
  try {
    for (const JournalRecord& record : records) {
      for (const Notification& n : record.rows) {
        bind_insert(db.insert_if_absent.get(), n, now);
        db.step_done(db.insert_if_absent.get(), "insert a journaled notification");
        if (sqlite3_changes(db.db.get()) == 1) inserted.push_back(&n);  // else committed before the crash
      }
    }
    db.step_done(db.commit.get(), "commit");
  } catch (...) {
    sqlite3_step(db.rollback.get());
    sqlite3_reset(db.rollback.get());
    throw;
  }
  // Their intake lines never reached the log: the process died before their commit.
  for (const Notification* n : inserted) log_intake(*log_, *n, next_seq_);
  log_->flush();

  // Then the sending marks whose write never happened, with their events: each starts an
  // attempt (attempts only grow), so a row that shows that attempt has it, or a later state of it.
  Pending marks;
  const Stmt attempt_of = write_db_->prepare("SELECT attempt FROM notifications WHERE id=?");
  for (JournalRecord& record : records) {
    for (SendingMark& m : record.marks) {
      if (!committed_before(attempt_of.get(), m.update)) write_mark(marks.batch, m);
    }
  }
  if (!marks.batch.empty()) {
    std::vector<Pending> work;
    {
      std::lock_guard lock(mutex_);
      queue_locked(std::move(marks), now_us());  // fresh sequence numbers, in the journal's order
      work.swap(queue_);
    }
    if (!apply(work)) throw StoreError("cannot replay the journal's sending marks");
  }
  journal_->discard_recovered();
}

bool Store::submit_journaled(WriteBatch& batch, Done& done) {
  if (!journal_ || faulted_.load()) return false;  // degraded: intake fails fast, as without a journal
  std::vector<Id> ids;
  ids.reserve(batch.inserts.size());
  {
    // Before the record exists: the commit that follows it removes these again.
    std::lock_guard lock(journaled_mutex_);
    // The writer is this far behind: the caller waits for a commit instead (back-pressure), which
    // also bounds the memory held here and what a replay has to insert.
    if (journaled_.size() >= max_journaled_rows) return false;
    for (const Notification& n : batch.inserts) {
      StoredNotification row;
      row.notification = n;
      row.content_hash = n.idempotency_key.empty() ? 0 : content_hash(n);
      row.updated_at_ms = n.created_at_ms;
      journaled_.emplace(n.id, std::move(row));
      ids.push_back(n.id);
    }
  }
  auto forget = [&] {
    std::lock_guard lock(journaled_mutex_);
    for (const Id id : ids) journaled_.erase(id);
  };
  const std::int64_t ts = now_us();
  {
    // The record is appended under the queue's lock: records and commits keep one order, and no
    // record is written for rows the writer will never see (after close).
    std::lock_guard lock(mutex_);
    if (stopping_) {
      forget();
      return false;  // the caller's commit says the store is closed
    }
    Pending p;
    try {
      p.journal_ticket = journal_->append(batch.inserts);
    } catch (const StoreError&) {
      // The journal's disk is full: the caller commits the rows to SQLite instead, which may
      // still have room (or fails fast and marks the store degraded, as without a journal).
      forget();
      return false;
    }
    p.batch = std::move(batch);
    p.done = std::move(done);
    p.on_fault = OnFault::hold;  // durable already: a refused commit is retried, never reported to the caller
    queue_locked(std::move(p), ts);
  }
  wake_.notify_one();
  return true;
}

std::uint64_t Store::journal_marks(const std::vector<SendingMark>& marks) {
  if (!journal_ || faulted_.load() || marks.empty()) return 0;
  // The writer is this far behind: the loop waits for commits again (back-pressure), which also
  // bounds what a replay has to apply.
  if (journal_->open_records() >= max_journaled_rows) return 0;
  try {
    return journal_->append({}, marks);
  } catch (const StoreError&) {
    return 0;  // the journal's disk is full: the marks are committed before their requests leave
  }
}

bool Store::has_journaled() {
  std::lock_guard lock(journaled_mutex_);
  return !journaled_.empty();
}

void Store::journal_done(const Pending& p) {
  {
    std::lock_guard lock(journaled_mutex_);
    for (const Notification& n : p.batch.inserts) journaled_.erase(n.id);
  }
  journal_->committed(p.journal_ticket);
}

}  // namespace herald
