#include "herald/thread_name.hpp"
#include "herald/store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <future>
#include <iterator>
#include <limits>

#include <sqlite3.h>

#include "herald/clock.hpp"
#include "herald/delivery_log.hpp"
#include "herald/event_rows.hpp"
#include "herald/errors.hpp"

namespace herald {

namespace {

constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS notifications (
  id INTEGER PRIMARY KEY,
  tenant TEXT NOT NULL,
  type TEXT NOT NULL,
  recipient_id TEXT NOT NULL,
  recipient TEXT NOT NULL,
  data TEXT NOT NULL,
  priority INTEGER NOT NULL,
  idempotency_key TEXT,
  ordering_key TEXT,
  send_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  content_hash INTEGER NOT NULL,
  state INTEGER NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,
  provider_index INTEGER NOT NULL DEFAULT 0,
  provider_attempt INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL,
  provider TEXT,
  provider_message_id TEXT,
  last_error TEXT,
  in_doubt INTEGER NOT NULL DEFAULT 0,
  channel TEXT,
  address TEXT,
  accepted_at INTEGER NOT NULL DEFAULT 0,
  receipt TEXT,
  receipt_at INTEGER NOT NULL DEFAULT 0,
  cost REAL NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS notifications_idempotency
  ON notifications (tenant, type, recipient_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_unfinished ON notifications (state) WHERE state < 4;
CREATE INDEX IF NOT EXISTS notifications_dead ON notifications (state) WHERE state = 6;
CREATE TABLE IF NOT EXISTS suppressions (
  channel TEXT NOT NULL,
  address TEXT NOT NULL,
  reason TEXT NOT NULL,
  detail TEXT,
  provider TEXT,
  notification_id INTEGER NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (channel, address)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS store_probe (
  k INTEGER PRIMARY KEY,
  at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
  nid INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  ts_us INTEGER NOT NULL,
  kind TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  provider TEXT,
  latency_us INTEGER NOT NULL,
  http_status INTEGER NOT NULL,
  detail TEXT,
  PRIMARY KEY (nid, seq)
) WITHOUT ROWID;
)sql";

/// Journaled and not yet committed beyond which their submitter waits for a commit again: rows
/// for send(), parts of records (rows, marks) for the loop's marks.
constexpr std::size_t max_journaled_rows = 10'000;

constexpr const char* select_columns =
    "id, tenant, type, recipient_id, recipient, data, priority, idempotency_key, ordering_key, send_at, "
    "expires_at, created_at, content_hash, state, attempt, provider_index, provider_attempt, next_at, "
    "updated_at, provider, provider_message_id, last_error, in_doubt, channel, address, accepted_at, receipt, "
    "receipt_at, cost, parent_id, step";

/// Columns added after the first release: ALTERed into older files on open.
constexpr const char* added_columns[] = {
    "channel TEXT", "address TEXT", "accepted_at INTEGER NOT NULL DEFAULT 0", "receipt TEXT",
    "receipt_at INTEGER NOT NULL DEFAULT 0", "cost REAL NOT NULL DEFAULT 0", "parent_id INTEGER NOT NULL DEFAULT 0",
    "step INTEGER NOT NULL DEFAULT 0"};
/// The same for events.
constexpr const char* added_event_columns[] = {"step INTEGER NOT NULL DEFAULT -1", "more TEXT"};

/// One row per event for SQL readers: a row of `events` may hold the earlier events of its
/// notification from the same commit in `more` (herald/event_rows.hpp).
constexpr const char* all_events_view_sql = R"sql(
CREATE VIEW IF NOT EXISTS all_events AS
SELECT nid, seq, ts_us, kind, attempt, provider, latency_us, http_status, detail, step FROM events
UNION ALL
SELECT e.nid, json_extract(m.value, '$[0]'), json_extract(m.value, '$[1]'), json_extract(m.value, '$[2]'),
       json_extract(m.value, '$[3]'), NULLIF(json_extract(m.value, '$[4]'), ''), json_extract(m.value, '$[5]'),
       json_extract(m.value, '$[6]'), NULLIF(json_extract(m.value, '$[7]'), ''), json_extract(m.value, '$[8]')
FROM events e, json_each(e.more) m WHERE e.more IS NOT NULL
)sql";

/// The steps of a plan with many steps, found from their parent. Partial: other rows cost nothing.
constexpr const char* steps_index_sql =
    "CREATE INDEX IF NOT EXISTS notifications_steps ON notifications (parent_id) WHERE parent_id > 0";

/// Only rows that expect a receipt are indexed, so the index costs nothing for the others.
constexpr const char* awaiting_index_sql =
    "CREATE INDEX IF NOT EXISTS notifications_awaiting ON notifications (accepted_at) "
    "WHERE state = 4 AND receipt IS NULL AND accepted_at > 0";

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

/// A text column as it lies in SQLite's buffer (valid until the next step); "" for NULL.
std::string_view column_view(sqlite3_stmt* s, int col) {
  const auto* p = sqlite3_column_text(s, col);
  return p == nullptr ? std::string_view() : std::string_view(reinterpret_cast<const char*>(p),
                                                              static_cast<std::size_t>(sqlite3_column_bytes(s, col)));
}

std::string column_text(sqlite3_stmt* s, int col) { return std::string(column_view(s, col)); }

void bind_text(sqlite3_stmt* s, int col, std::string_view v, bool null_if_empty = false) {
  if (null_if_empty && v.empty()) {
    sqlite3_bind_null(s, col);
  } else {
    sqlite3_bind_text(s, col, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
}

/// The parameters of the notifications INSERT (both forms) for one row.
void bind_insert(sqlite3_stmt* s, const Notification& n, std::int64_t now) {
  sqlite3_bind_int64(s, 1, n.id);
  bind_text(s, 2, n.tenant);
  bind_text(s, 3, n.type);
  bind_text(s, 4, n.recipient_id);
  bind_text(s, 5, n.recipient_json);
  bind_text(s, 6, n.data_json);
  sqlite3_bind_int(s, 7, static_cast<int>(n.priority));
  bind_text(s, 8, n.idempotency_key, true);
  bind_text(s, 9, n.ordering_key, true);
  sqlite3_bind_int64(s, 10, n.send_at_ms);
  sqlite3_bind_int64(s, 11, n.expires_at_ms);
  sqlite3_bind_int64(s, 12, n.created_at_ms);
  // The hash only serves idempotency: rows without a key skip computing it.
  sqlite3_bind_int64(s, 13, n.idempotency_key.empty() ? 0 : static_cast<sqlite3_int64>(content_hash(n)));
  sqlite3_bind_int64(s, 14, now);
  sqlite3_bind_int64(s, 15, n.parent_id);
  sqlite3_bind_int(s, 16, n.step);
}

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

Event make_intake_event(const Notification& n, EventKind kind, std::int64_t seq, std::int64_t ts_us) {
  Event e = make_event(n, 0, kind);
  e.seq = seq;
  e.ts_us = ts_us;
  return e;
}

/// A new notification's "received" and "queued" lines in the log (its row stands for them in
/// SQLite), numbered from `seq`; none for a plan's step, whose parent records that it started.
void log_intake(DeliveryLog& log, const Notification& n, std::int64_t& seq) {
  if (n.parent_id != 0) return;
  const std::int64_t ts_us = n.created_at_ms * 1000;
  log.append(make_intake_event(n, EventKind::received, seq++, ts_us));
  log.append(make_intake_event(n, EventKind::queued, seq++, ts_us));
}

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

struct Store::Db {
  std::unique_ptr<sqlite3, DbDeleter> db;
  Stmt insert, insert_if_absent, update, event, receipt, suppress, unsuppress, get, find_idem, events, unfinished, by_state, steps_of,
      by_recipient, max_id,
      suppressions, prune_rows, prune_events, prune_system_events, page_count, freelist_count, page_size, probe;
  Stmt begin, commit, rollback, savepoint, release, rollback_to;

  [[noreturn]] void fail(const std::string& what) const {
    throw SqliteError(what + ": " + sqlite3_errmsg(db.get()), sqlite3_errcode(db.get()) & 0xff);
  }
  void exec(const char* sql) const {
    char* err = nullptr;
    if (sqlite3_exec(db.get(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : "unknown error";
      sqlite3_free(err);
      throw SqliteError(std::string("sqlite: ") + msg, sqlite3_errcode(db.get()) & 0xff);
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

  Db(const std::filesystem::path& path, Durability durability, bool writer, bool read_only = false) {
    sqlite3* raw = nullptr;
    const int flags = read_only ? SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX
                                : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path.c_str(), &raw, flags, nullptr) != SQLITE_OK) {
      std::string msg = raw != nullptr ? sqlite3_errmsg(raw) : "out of memory";
      sqlite3_close_v2(raw);
      throw StoreError("cannot open " + path.string() + ": " + msg);
    }
    db.reset(raw);
    sqlite3_busy_timeout(raw, 5000);
    if (!read_only) exec("PRAGMA journal_mode=WAL");
    exec(durability == Durability::fsync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    exec("PRAGMA temp_store=MEMORY");
    exec("PRAGMA cache_size=-65536");
    if (writer) {
      exec(schema_sql);
      for (const char* column : added_columns) {
        // "duplicate column" means the file already has it.
        sqlite3_exec(db.get(), (std::string("ALTER TABLE notifications ADD COLUMN ") + column).c_str(), nullptr,
                     nullptr, nullptr);
      }
      for (const char* column : added_event_columns) {
        sqlite3_exec(db.get(), (std::string("ALTER TABLE events ADD COLUMN ") + column).c_str(), nullptr, nullptr,
                     nullptr);
      }
      exec(awaiting_index_sql);
      exec(steps_index_sql);
      exec(all_events_view_sql);
      // Checkpoints run on their own thread (Store::checkpoint_loop): a checkpoint inside a commit
      // would stall every send waiting on that commit.
      exec("PRAGMA wal_autocheckpoint=0");
      // A checkpoint that resets the WAL also cuts the file back to this size: a burst does not
      // leave a WAL of gigabytes behind.
      exec("PRAGMA journal_size_limit=67108864");
      const std::string insert_sql =
          "INTO notifications (id, tenant, type, recipient_id, recipient, data, priority, idempotency_key, "
          "ordering_key, send_at, expires_at, created_at, content_hash, state, updated_at, parent_id, step) "
          "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,0,?,?,?)";
      insert = prepare("INSERT " + insert_sql);
      insert_if_absent = prepare("INSERT OR IGNORE " + insert_sql);  // the intake journal's replay
      update = prepare(
          "UPDATE notifications SET state=?, attempt=?, provider_index=?, provider_attempt=?, next_at=?, "
          "updated_at=?, provider=?, provider_message_id=?, last_error=?, in_doubt=?, channel=?, address=?, "
          "accepted_at=?, cost=? WHERE id=?");
      receipt = prepare("UPDATE notifications SET receipt=?, receipt_at=? WHERE id=? AND (? = 0 OR receipt IS NULL)");
      suppress = prepare(
          "INSERT OR REPLACE INTO suppressions (channel, address, reason, detail, provider, notification_id, at) "
          "VALUES (?,?,?,?,?,?,?)");
      unsuppress = prepare("DELETE FROM suppressions WHERE channel=? AND address=?");
      event = prepare(
          "INSERT OR REPLACE INTO events (nid, seq, ts_us, kind, attempt, provider, latency_us, http_status, detail, "
          "step, more) VALUES (?,?,?,?,?,?,?,?,?,?,?)");
      prune_rows = prepare(
          "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications WHERE id < ?1 AND state >= 4 "
          "AND updated_at < ?2 ORDER BY id LIMIT ?3) RETURNING id");
      prune_events = prepare(
          "DELETE FROM events WHERE nid BETWEEN ?1 AND ?2 AND nid NOT IN "
          "(SELECT id FROM notifications WHERE id BETWEEN ?1 AND ?2) RETURNING json_array_length(more)");
      prune_system_events = prepare("DELETE FROM events WHERE nid = 0 AND ts_us < ? RETURNING json_array_length(more)");
      probe = prepare("INSERT OR REPLACE INTO store_probe (k, at) VALUES (1, ?)");
      begin = prepare("BEGIN");
      commit = prepare("COMMIT");
      rollback = prepare("ROLLBACK");
      savepoint = prepare("SAVEPOINT batch");
      release = prepare("RELEASE batch");
      rollback_to = prepare("ROLLBACK TO batch");
    } else {
      const std::string cols = select_columns;
      get = prepare("SELECT " + cols + " FROM notifications WHERE id=?");
      find_idem = prepare(
          "SELECT id, content_hash, state FROM notifications "
          "WHERE tenant=? AND type=? AND recipient_id=? AND idempotency_key=?");
      events = prepare(
          "SELECT nid, seq, ts_us, kind, attempt, provider, latency_us, http_status, detail, step, more FROM events "
          "WHERE nid=? ORDER BY seq");
      unfinished = prepare("SELECT " + cols + " FROM notifications WHERE state < 4 ORDER BY id");
      by_state = prepare("SELECT " + cols + " FROM notifications WHERE state=? AND parent_id=0 ORDER BY id LIMIT ?");
      steps_of = prepare("SELECT " + cols + " FROM notifications WHERE parent_id=? ORDER BY id");
      by_recipient = prepare("SELECT " + cols +
                             " FROM notifications WHERE recipient_id=? AND parent_id=0 ORDER BY id DESC LIMIT ?");
      suppressions = prepare(
          "SELECT channel, address, reason, detail, provider, notification_id, at FROM suppressions ORDER BY at "
          "LIMIT ?");
      max_id = prepare("SELECT COALESCE(MAX(id), 0), (SELECT COALESCE(MAX(seq), 0) FROM events) FROM notifications");
      page_count = prepare("PRAGMA page_count");
      freelist_count = prepare("PRAGMA freelist_count");
      page_size = prepare("PRAGMA page_size");
    }
  }
};

namespace {

constexpr const char* reserve_name = ".reserve";

/// Sets `bytes` of real disk blocks aside in `path` (fallocate, so a full disk cannot take them).
/// False, and no file left behind, when the disk has no room.
bool make_reserve(const std::filesystem::path& path, std::int64_t bytes) {
  if (bytes <= 0) return true;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const bool ok = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)) == 0;
  ::close(fd);
  if (!ok) ::unlink(path.c_str());
  return ok;
}

}  // namespace

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

Store::Store(const std::filesystem::path& dir, Durability durability, std::int64_t log_segment_bytes)
    : Store(dir, [&] {
        StoreOptions o;
        o.durability = durability;
        o.log_segment_bytes = log_segment_bytes;
        return o;
      }()) {}

Store::Store(const std::filesystem::path& dir, StoreOptions options)
    : dir_(dir), options_(options), durability_(options.durability) {
  open(dir);
  if (options_.read_only) return;  // no threads: reads happen on the caller's
  {
    sqlite3_stmt* s = read_db_->max_id.get();
    if (sqlite3_step(s) == SQLITE_ROW) next_seq_ = sqlite3_column_int64(s, 1) + 1;
    sqlite3_reset(s);
  }
  next_seq_ = std::max(next_seq_, now_us());  // keeps log seq unique across restarts without a scan
  if (durability_ == Durability::process) {
    try {
      journal_ = std::make_unique<IntakeJournal>(dir / "journal");
      replay_journal();
    } catch (const StoreError&) {
      // A full disk: intake commits each row as before, and what a previous process journaled
      // stays on disk until an open that can insert it.
      journal_.reset();
    }
  }
  checkpointer_ = std::thread([this] {
    detail::name_this_thread("herald-ckpt");
    checkpoint_loop();
  });
  writer_ = std::thread([this] {
    detail::name_this_thread("herald-store");
    writer_loop();
  });
}

void Store::open(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw StoreError("cannot create data directory " + dir.string() + ": " + ec.message());
  db_path_ = dir / "herald.db";
  if (options_.read_only) {
    if (!std::filesystem::exists(db_path_, ec)) throw StoreError("no herald data in " + dir.string());
    read_db_ = std::make_unique<Db>(db_path_, durability_, false, true);
    return;
  }
  lock_folder(dir);  // before anything is written: a second engine must not touch the files
  const auto reserve = dir / reserve_name;
  auto connect = [this] {
    write_db_ = std::make_unique<Db>(db_path_, durability_, true);
    read_db_ = std::make_unique<Db>(db_path_, durability_, false);
    // The first read maps the WAL index (<db>-shm), which needs disk blocks: fail here, not later.
    sqlite3_stmt* s = read_db_->max_id.get();
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) read_db_->fail("read " + db_path_.string());
  };
  try {
    connect();
  } catch (const StoreError&) {
    // A full disk cannot hold the WAL index: give up the reserve and try once more, so an engine
    // can always open its folder and resume (its writes wait until space returns).
    write_db_.reset();
    read_db_.reset();
    if (!std::filesystem::exists(reserve, ec)) throw;
    std::filesystem::remove(reserve, ec);
    connect();
  }
  log_ = std::make_unique<DeliveryLog>(dir / "log", options_.log_segment_bytes);
  restore_reserve();
}

void Store::lock_folder(const std::filesystem::path& dir) {
  const auto path = dir / "herald.lock";
  // O_CLOEXEC: a child process must not inherit (and so keep) the lock.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw StoreError("cannot open " + path.string() + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    std::string pid = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("unknown");
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    if (err != EWOULDBLOCK) throw StoreError("cannot lock " + path.string() + ": " + std::strerror(err));
    throw StoreError("data folder " + dir.string() + " is in use by another engine (pid " + pid +
                     "): one folder has one engine; share it through one herald serve, or read it with "
                     "herald.open_readonly");
  }
  // The pid is for the message above; on a full disk it may not be written, the lock still holds.
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0 && ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    // nothing to do: see above
  }
  lock_fd_ = fd;
}

void Store::restore_reserve() {
  std::error_code ec;
  const auto reserve = dir_ / reserve_name;
  if (options_.reserve_bytes <= 0 || std::filesystem::exists(reserve, ec)) return;
  make_reserve(reserve, options_.reserve_bytes);  // no room now: tried again after the next recovery
}

Store::~Store() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  wake_checkpointer_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (checkpointer_.joinable()) checkpointer_.join();
  std::lock_guard applying(apply_mutex_);  // a submitter's own commit, if one is still running, ends first
  journal_.reset();  // keeps the files of records never committed, for the next open
  log_.reset();
  write_db_.reset();
  read_db_.reset();
  if (lock_fd_ >= 0) ::close(lock_fd_);  // last: the folder is free once every file is closed
}

void Store::checkpoint_loop() {
  // PASSIVE never blocks the writer or readers; it copies what it can from the WAL into the file.
  std::unique_ptr<Db> db;
  try {
    db = std::make_unique<Db>(db_path_, durability_, false);
  } catch (const StoreError&) {
    return;  // without a checkpoint connection the WAL only grows; the store still works
  }
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_checkpointer_.wait_for(lock, std::chrono::milliseconds(200));
    if (stopping_) break;
    lock.unlock();
    sqlite3_wal_checkpoint_v2(db->db.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    lock.lock();
  }
  lock.unlock();
  sqlite3_wal_checkpoint_v2(db->db.get(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
}

std::filesystem::path Store::log_dir() const { return dir_ / "log"; }

void Store::enqueue(Pending p, bool wake_writer) {
  const std::int64_t ts = now_us();
  {
    std::lock_guard lock(mutex_);
    if (options_.read_only) throw StoreError("the store is open read-only");
    if (stopping_) throw StoreError("store is closed");
    queue_locked(std::move(p), ts);
  }
  if (wake_writer) wake_.notify_one();
}

void Store::queue_locked(Pending p, std::int64_t ts) {
  // Intake events go to the JSON Lines log only; the row itself records them in SQLite.
  p.intake_seq = next_seq_;
  next_seq_ += static_cast<std::int64_t>(2 * p.batch.inserts.size());
  for (auto& e : p.batch.events) {
    e.seq = next_seq_++;
    if (e.ts_us == 0) e.ts_us = ts;
  }
  if (p.on_fault == OnFault::fail) ++fail_fast_queued_;
  queue_.push_back(std::move(p));
}

void Store::submit_and_wait_here(WriteBatch batch, Done done) {
  Pending p;
  p.batch = std::move(batch);
  p.done = std::move(done);
  p.on_fault = OnFault::fail;
  enqueue(std::move(p), false);
  if (!commit_on_this_thread()) wake_.notify_one();
}

bool Store::commit_on_this_thread() {
  std::unique_lock applying(apply_mutex_, std::try_to_lock);
  if (!applying.owns_lock() || faulted_.load()) return false;  // the running commit, or the writer, takes it
  std::vector<Pending> work;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    work.swap(queue_);
    fail_fast_queued_ = 0;
  }
  if (!work.empty() && !apply(work)) {
    // Refused: what is held goes back to the front of the queue for the writer, which retries it
    // with backoff and records the recovery.
    faulted_.store(true);
    std::lock_guard lock(mutex_);
    queue_.insert(queue_.begin(), std::make_move_iterator(work.begin()), std::make_move_iterator(work.end()));
    return false;
  }
  std::lock_guard lock(mutex_);
  return queue_.empty();  // what arrived during the commit goes to the writer
}

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

void Store::submit(WriteBatch batch, Done done, OnFault on_fault) {
  Pending p;
  p.batch = std::move(batch);
  p.done = std::move(done);
  p.on_fault = on_fault;
  enqueue(std::move(p));
}

void Store::commit(WriteBatch batch) {
  std::promise<void> promise;
  auto future = promise.get_future();
  submit(
      std::move(batch),
      [&promise](std::exception_ptr err, WriteBatch&) {
        if (err) {
          promise.set_exception(err);
        } else {
          promise.set_value();
        }
      },
      OnFault::fail);
  future.get();
}

void Store::flush() { commit({}); }

StoreHealth Store::health() const {
  std::lock_guard lock(mutex_);
  return health_;
}

void Store::note_fault(const std::string& error, std::size_t held) {
  StoreHealth now;
  bool began = false;
  {
    std::lock_guard lock(mutex_);
    if (!health_.degraded) {
      health_.degraded = true;
      health_.since_ms = now_ms();
      began = true;
    }
    health_.error = error;
    health_.held_batches = held;
    ++health_.write_faults;
    now = health_;
  }
  if (began && options_.on_health_change) options_.on_health_change(now);
}

void Store::note_recovered() {
  StoreHealth was;
  {
    std::lock_guard lock(mutex_);
    was = health_;
    health_.degraded = false;
    health_.error.clear();
    health_.since_ms = 0;
    health_.held_batches = 0;
  }
  // The fault and its end go into the log once the disk takes writes again, with their own times.
  WriteBatch b;
  Event down;
  down.kind = EventKind::store_degraded;
  down.ts_us = was.since_ms * 1000;
  down.detail = "writes refused: " + was.error + "; the engine's records were held in memory";
  Event up;
  up.kind = EventKind::store_recovered;
  up.detail = "writes accepted again after " + std::to_string(now_ms() - was.since_ms) + " ms and " +
              std::to_string(was.write_faults) + " refused commits in all; held records committed in order";
  b.events.push_back(std::move(down));
  b.events.push_back(std::move(up));
  if (options_.on_health_change) {
    StoreHealth after;
    after.write_faults = was.write_faults;
    options_.on_health_change(after);
  }
  restore_reserve();
  Pending p;
  p.batch = std::move(b);
  try {
    enqueue(std::move(p));
  } catch (const StoreError&) {
    // closing: the next open will not know of this episode; the rows themselves are complete
  }
}

void Store::writer_loop() {
  using steady = std::chrono::steady_clock;
  std::vector<Pending> work;  // batches held by a refused commit, then what arrived since
  std::chrono::milliseconds backoff{50};
  steady::time_point retry_at{};
  steady::time_point give_up_at{};
  bool stop_seen = false;
  for (;;) {
    std::unique_lock applying(apply_mutex_, std::defer_lock);
    {
      std::unique_lock lock(mutex_);
      if (work.empty() && faulted_.load() && !stopping_) {
        // Degraded with nothing held (only intake was refused): probe the disk with a one-row
        // write at each retry, so health recovers by itself when space returns, traffic or not.
        if (!wake_.wait_until(lock, retry_at, [this] { return stopping_ || !queue_.empty(); })) {
          Pending probe;
          probe.probe = true;
          work.push_back(std::move(probe));
        }
      }
      if (work.empty()) {
        wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping and drained
      } else {
        // Held writes: wait for the next retry, unless a submitter is waiting to hear the outcome
        // (intake must fail fast) or the store is closing.
        wake_.wait_until(lock, retry_at, [&] { return fail_fast_queued_ > 0 || (stopping_ && !stop_seen); });
        if (stopping_ && !stop_seen) {
          stop_seen = true;
          give_up_at = steady::now() + options_.stop_timeout;
        }
        if (stop_seen && steady::now() >= give_up_at) {
          for (auto& p : queue_) work.push_back(std::move(p));
          queue_.clear();
          lock.unlock();
          // Closing while the disk refuses writes: what was held is lost to this process. The rows
          // keep their last committed state, so a restart resumes from there (in doubt where an
          // attempt was marked "sending").
          const auto err = std::make_exception_ptr(
              StoreError("store closed while the disk refused writes (" + health().error + ")"));
          for (auto& p : work) {
            if (p.done) p.done(err, p.batch);
          }
          return;
        }
      }
      // Commits take apply_mutex_ before mutex_: a submitter may be committing on its own thread.
      if (!applying.try_lock()) {
        lock.unlock();
        applying.lock();
        lock.lock();
      }
      for (auto& p : queue_) work.push_back(std::move(p));
      queue_.clear();
      fail_fast_queued_ = 0;
    }
    if (work.empty()) continue;  // a submitter committed it meanwhile
    if (apply(work)) {
      work.clear();
      backoff = std::chrono::milliseconds(50);
      if (faulted_.exchange(false)) note_recovered();
    } else {
      faulted_.store(true);
      retry_at = steady::now() + backoff;
      backoff = std::min(backoff * 2, options_.retry_max);
    }
  }
}

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

bool Store::apply(std::vector<Pending>& work) {
  Db& db = *write_db_;
  std::vector<std::exception_ptr> errors(work.size());
  const std::int64_t now = now_ms();
  std::exception_ptr fault;
  std::vector<const Event*> events;  // of the batches applied, to be written per notification
  try {
    db.step_done(db.begin.get(), "begin");
    for (std::size_t i = 0; i < work.size(); ++i) {
      const WriteBatch& b = work[i].batch;
      if (b.empty() && !work[i].prune && !work[i].probe) continue;
      db.step_done(db.savepoint.get(), "savepoint");
      try {
        for (const Notification& n : b.inserts) {
          bind_insert(db.insert.get(), n, now);
          db.step_done(db.insert.get(), "insert notification");
        }
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
    for (const auto& group : group_for_rows(events)) {
      const Event& e = *group.back();
      const std::string more = pack_earlier_events(group);
      sqlite3_stmt* s = db.event.get();
      sqlite3_bind_int64(s, 1, e.notification_id);
      sqlite3_bind_int64(s, 2, e.seq);
      sqlite3_bind_int64(s, 3, e.ts_us);
      bind_text(s, 4, to_string(e.kind));
      sqlite3_bind_int(s, 5, e.attempt);
      bind_text(s, 6, e.provider, true);
      sqlite3_bind_int64(s, 7, e.latency_us);
      sqlite3_bind_int(s, 8, e.http_status);
      bind_text(s, 9, e.detail, true);
      sqlite3_bind_int(s, 10, e.step);
      bind_text(s, 11, more, true);
      db.step_done(s, "insert event");
    }
    db.step_done(db.commit.get(), "commit");
  } catch (...) {
    fault = std::current_exception();
    sqlite3_step(db.rollback.get());  // SQLite may have rolled back already (full disk): then a no-op
    sqlite3_reset(db.rollback.get());
  }
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
    if (p.done) p.done(err, p.batch);
  }
  log_->flush();
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

std::int64_t Store::db_bytes() {
  std::lock_guard lock(read_mutex_);
  auto read = [](sqlite3_stmt* s) {
    std::int64_t v = 0;
    if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return v;
  };
  const std::int64_t pages = read(read_db_->page_count.get());
  const std::int64_t free_pages = read(read_db_->freelist_count.get());
  return (pages - free_pages) * read(read_db_->page_size.get());
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
      "INDEXED BY notifications_idempotency WHERE idempotency_key IS NOT NULL");
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
  sqlite3_stmt* s = read_db_->max_id.get();
  Id out = 0;
  if (sqlite3_step(s) == SQLITE_ROW) out = sqlite3_column_int64(s, 0);
  sqlite3_reset(s);
  return out;
}

}  // namespace herald
