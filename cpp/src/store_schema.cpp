// The store's SQLite schema and the statements each connection prepares (Store::Db's
// constructor): the writer's connection creates the tables, adds the columns of later releases to
// older files and prepares the writes; the reader's and the checkpointer's prepare the reads.
#include "store_db.hpp"

namespace herald {

using namespace store_detail;

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
CREATE UNIQUE INDEX IF NOT EXISTS notifications_idempotency_by_key
  ON notifications (idempotency_key, recipient_id, type, tenant) WHERE idempotency_key IS NOT NULL;
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
CREATE TABLE IF NOT EXISTS store_counters (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
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

/// `row` `count` times, comma-separated: the VALUES of a multi-row INSERT.
std::string rows_of(const std::string& row, int count) {
  std::string out;
  for (int i = 0; i < count; ++i) {
    if (i > 0) out += ',';
    out += row;
  }
  return out;
}

}  // namespace

Store::Db::Db(const std::filesystem::path& path, Durability durability, bool writer, bool read_only) {
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
    // The idempotency index was (tenant, type, recipient_id, idempotency_key): an insert compared
    // the same tenant and type on every step down the tree. The key first decides at once (an
    // intake thread's insert: 56k -> 54k instructions). The index above replaces it; a file
    // made before is indexed anew once, on its first open.
    exec("DROP INDEX IF EXISTS notifications_idempotency");
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
        "VALUES ";
    const std::string insert_row = "(?,?,?,?,?,?,?,?,?,?,?,?,?,0,?,?,?)";
    insert = prepare("INSERT " + insert_sql + insert_row);
    insert_many = prepare("INSERT " + insert_sql + rows_of(insert_row, rows_per_statement));
    insert_if_absent = prepare("INSERT OR IGNORE " + insert_sql + insert_row);  // the intake journal's replay
    update = prepare(
        "UPDATE notifications SET state=?, attempt=?, provider_index=?, provider_attempt=?, next_at=?, "
        "updated_at=?, provider=?, provider_message_id=?, last_error=?, in_doubt=?, channel=?, address=?, "
        "accepted_at=?, cost=? WHERE id=?");
    receipt = prepare("UPDATE notifications SET receipt=?, receipt_at=? WHERE id=? AND (? = 0 OR receipt IS NULL)");
    suppress = prepare(
        "INSERT OR REPLACE INTO suppressions (channel, address, reason, detail, provider, notification_id, at) "
        "VALUES (?,?,?,?,?,?,?)");
    unsuppress = prepare("DELETE FROM suppressions WHERE channel=? AND address=?");
    const std::string event_sql =
        "INSERT OR REPLACE INTO events (nid, seq, ts_us, kind, attempt, provider, latency_us, http_status, detail, "
        "step, more) VALUES ";
    const std::string event_row = "(?,?,?,?,?,?,?,?,?,?,?)";
    event = prepare(event_sql + event_row);
    event_many = prepare(event_sql + rows_of(event_row, rows_per_statement));
    prune_rows = prepare(
        "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications WHERE id < ?1 AND state >= 4 "
        "AND updated_at < ?2 ORDER BY id LIMIT ?3) RETURNING id");
    prune_events = prepare(
        "DELETE FROM events WHERE nid BETWEEN ?1 AND ?2 AND nid NOT IN "
        "(SELECT id FROM notifications WHERE id BETWEEN ?1 AND ?2) RETURNING json_array_length(more)");
    prune_system_events = prepare("DELETE FROM events WHERE nid = 0 AND ts_us < ? RETURNING json_array_length(more)");
    probe = prepare("INSERT OR REPLACE INTO store_probe (k, at) VALUES (1, ?)");
    seq_ceiling = prepare("SELECT value FROM store_counters WHERE name = 'seq_ceiling'");
    raise_seq_ceiling = prepare("INSERT OR REPLACE INTO store_counters (name, value) VALUES ('seq_ceiling', ?)");
    max_event_seq = prepare("SELECT COALESCE(MAX(seq), 0) FROM events");
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
    max_id = prepare("SELECT COALESCE(MAX(id), 0) FROM notifications");
    page_count = prepare("PRAGMA page_count");
    freelist_count = prepare("PRAGMA freelist_count");
    page_size = prepare("PRAGMA page_size");
  }
}

}  // namespace herald
