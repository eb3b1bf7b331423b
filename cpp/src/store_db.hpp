#pragma once
/// The store's insides, shared by the files that each do one job of it:
///   store.cpp          opening, the folder's lock, the disk reserve, checkpoints, the queue and
///                      the writer thread, health
///   store_schema.cpp   the schema and the prepared statements (Store::Db's constructor)
///   store_apply.cpp    one group commit (Store::apply) and retention's chunks (Store::prune)
///   store_journal.cpp  the intake journal's side: replay on open, journaled rows and marks
///   store_reads.cpp    the reader connection's queries
/// Here: SqliteError, Store::Db (SQLite handles and prepared statements) and the helpers more than
/// one of those files uses. Internal to the core.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <sqlite3.h>

#include "herald/delivery_log.hpp"
#include "herald/errors.hpp"
#include "herald/store.hpp"

namespace herald {

namespace store_detail {

inline constexpr const char* select_columns =
    "id, tenant, type, recipient_id, recipient, data, priority, idempotency_key, ordering_key, send_at, "
    "expires_at, created_at, content_hash, state, attempt, provider_index, provider_attempt, next_at, "
    "updated_at, provider, provider_message_id, last_error, in_doubt, channel, address, accepted_at, receipt, "
    "receipt_at, cost, parent_id, step";

/// A failed SQLite call, with its primary result code: a constraint belongs to one batch, anything
/// else (full disk, I/O error, busy) to the whole transaction.
class SqliteError : public StoreError {
 public:
  SqliteError(const std::string& what, int code) : StoreError(what), code_(code) {}
  [[nodiscard]] int code() const noexcept { return code_; }
  [[nodiscard]] bool batch_only() const noexcept {
    return code_ == SQLITE_CONSTRAINT || code_ == SQLITE_TOOBIG || code_ == SQLITE_MISMATCH || code_ == SQLITE_RANGE;
  }

 private:
  int code_;
};

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

struct DbDeleter {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};

inline void bind_text(sqlite3_stmt* s, int col, std::string_view v, bool null_if_empty = false) {
  if (null_if_empty && v.empty()) {
    sqlite3_bind_null(s, col);
  } else {
    sqlite3_bind_text(s, col, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
}

/// Rows per statement of the multi-row forms (Db::insert_many, Db::event_many). A statement has a
/// fixed cost besides its rows: a cursor opened and closed on the table and on each index, its halt
/// and its reset. For an intake row that was ~7k of ~23k instructions (callgrind); 32 rows share it.
inline constexpr int rows_per_statement = 32;
inline constexpr int insert_params = 16;  ///< parameters of one row of the notifications INSERT
inline constexpr int event_params = 11;   ///< of one row of the events INSERT

/// One row's parameters of the notifications INSERT (every form), as row `row` of the statement.
inline void bind_insert(sqlite3_stmt* s, const Notification& n, std::int64_t now, int row = 0) {
  const int at = row * insert_params;
  sqlite3_bind_int64(s, at + 1, n.id);
  bind_text(s, at + 2, n.tenant);
  bind_text(s, at + 3, n.type);
  bind_text(s, at + 4, n.recipient_id);
  bind_text(s, at + 5, n.recipient_json);
  bind_text(s, at + 6, n.data_json);
  sqlite3_bind_int(s, at + 7, static_cast<int>(n.priority));
  bind_text(s, at + 8, n.idempotency_key, true);
  bind_text(s, at + 9, n.ordering_key, true);
  sqlite3_bind_int64(s, at + 10, n.send_at_ms);
  sqlite3_bind_int64(s, at + 11, n.expires_at_ms);
  sqlite3_bind_int64(s, at + 12, n.created_at_ms);
  // The hash only serves idempotency: rows without a key skip computing it.
  const std::uint64_t hash = n.idempotency_key.empty() ? 0 : n.hash_of_content != 0 ? n.hash_of_content : content_hash(n);
  sqlite3_bind_int64(s, at + 13, static_cast<sqlite3_int64>(hash));
  sqlite3_bind_int64(s, at + 14, now);
  sqlite3_bind_int64(s, at + 15, n.parent_id);
  sqlite3_bind_int(s, at + 16, n.step);
}

/// One row's parameters of the events INSERT, as row `row` of the statement: the columns of `last`
/// and the packed earlier events `more` (empty: NULL). `more` is bound as it is, not copied: it
/// must stay unchanged until the statement has run.
inline void bind_event(sqlite3_stmt* s, const Event& last, const std::string& more, int row = 0) {
  const int at = row * event_params;
  sqlite3_bind_int64(s, at + 1, last.notification_id);
  sqlite3_bind_int64(s, at + 2, last.seq);
  sqlite3_bind_int64(s, at + 3, last.ts_us);
  bind_text(s, at + 4, to_string(last.kind));
  sqlite3_bind_int(s, at + 5, last.attempt);
  bind_text(s, at + 6, last.provider, true);
  sqlite3_bind_int64(s, at + 7, last.latency_us);
  sqlite3_bind_int(s, at + 8, last.http_status);
  bind_text(s, at + 9, last.detail, true);
  sqlite3_bind_int(s, at + 10, last.step);
  bind_text(s, at + 11, more, true);
}

inline Event make_intake_event(const Notification& n, EventKind kind, std::int64_t seq, std::int64_t ts_us) {
  Event e = make_event(n, 0, kind);
  e.seq = seq;
  e.ts_us = ts_us;
  return e;
}

/// A new notification's "received" and "queued" lines in the log (its row stands for them in
/// SQLite), numbered from `seq`; none for a plan's step, whose parent records that it started.
inline void log_intake(DeliveryLog& log, const Notification& n, std::int64_t& seq) {
  if (n.parent_id != 0) return;
  const std::int64_t ts_us = n.created_at_ms * 1000;
  log.append(make_intake_event(n, EventKind::received, seq++, ts_us));
  log.append(make_intake_event(n, EventKind::queued, seq++, ts_us));
}

}  // namespace store_detail

struct Store::Db {
  using Stmt = store_detail::Stmt;

  std::unique_ptr<sqlite3, store_detail::DbDeleter> db;
  Stmt insert, insert_many, insert_if_absent, update, event, event_many, receipt, suppress, unsuppress, get, find_idem, events, unfinished, by_state, steps_of,
      by_recipient, max_id,
      suppressions, prune_rows, prune_events, prune_system_events, page_count, freelist_count, page_size, probe;
  /// Writer only: every sequence number committed or logged lies below the persisted ceiling.
  Stmt seq_ceiling, raise_seq_ceiling, max_event_seq;
  Stmt begin, commit, rollback, savepoint, release, rollback_to;

  [[noreturn]] void fail(const std::string& what) const {
    throw store_detail::SqliteError(what + ": " + sqlite3_errmsg(db.get()), sqlite3_errcode(db.get()) & 0xff);
  }
  void exec(const char* sql) const {
    char* err = nullptr;
    if (sqlite3_exec(db.get(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : "unknown error";
      sqlite3_free(err);
      throw store_detail::SqliteError(std::string("sqlite: ") + msg, sqlite3_errcode(db.get()) & 0xff);
    }
  }
  Stmt prepare(const std::string& sql) const {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db.get(), sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK) {
      fail("prepare " + sql);
    }
    return Stmt(s);
  }
  void step_done(sqlite3_stmt* s, const char* what) const {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) fail(what);
  }
  /// The first column of a one-row answer as an integer; 0 when there is no row.
  static std::int64_t read_integer(sqlite3_stmt* s) {
    const std::int64_t out = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return out;
  }

  /// A batch's new notifications: `rows_per_statement` at a time, the rest one by one. A
  /// statement fails whole, as its batch does (the batch's savepoint is rolled back).
  void insert_rows(const std::vector<Notification>& rows, std::int64_t now) const;
  /// One events row per group (herald/event_rows.hpp), `rows_per_statement` rows at a time.
  void insert_event_rows(const std::vector<std::span<const Event* const>>& groups) const;
  /// Runs `count` items through `many` (a statement of `rows_per_statement` rows), as many times as
  /// they fill it, and the rest one by one through `one`: bind(statement, i, row) binds item `i`
  /// as row `row` of the statement.
  template <typename Bind>
  void step_rows(std::size_t count, sqlite3_stmt* many, sqlite3_stmt* one, const char* what, Bind bind) const {
    constexpr auto per = static_cast<std::size_t>(store_detail::rows_per_statement);
    std::size_t i = 0;
    for (; i + per <= count; i += per) {
      for (std::size_t r = 0; r < per; ++r) bind(many, i + r, static_cast<int>(r));
      step_done(many, what);
    }
    for (; i < count; ++i) {
      bind(one, i, 0);
      step_done(one, what);
    }
  }

  /// The writer's connection creates the schema and prepares the write statements; the others
  /// prepare the reads (store_schema.cpp).
  Db(const std::filesystem::path& path, Durability durability, bool writer, bool read_only = false);
};

}  // namespace herald
