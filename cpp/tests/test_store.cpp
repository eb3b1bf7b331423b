#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <sqlite3.h>
#include <unistd.h>

#include "herald/clock.hpp"
#include "log_lines.hpp"
#include "temp_dir.hpp"
#include "herald/errors.hpp"
#include "herald/store.hpp"

using namespace herald;
namespace fs = std::filesystem;
using herald::testing::TempDir;
using herald::testing::log_lines;

namespace {

Notification make(Id id, std::string key = {}) {
  Notification n;
  n.id = id;
  n.type = "otp";
  n.recipient_id = "u" + std::to_string(id);
  n.recipient_json = R"({"id":"u)" + std::to_string(id) + "\"}";
  n.data_json = R"({"code":"1"})";
  n.idempotency_key = std::move(key);
  n.created_at_ms = now_ms();
  return n;
}

}  // namespace

TEST(Store, CommitThenReadBackFromAFreshOpen) {
  TempDir dir;
  {
    Store store(dir.path, Durability::process);
    WriteBatch b;
    b.inserts.push_back(make(1, "k1"));
    b.inserts.push_back(make(2));
    store.commit(std::move(b));
    WriteBatch u;
    DeliveryState d;
    d.state = State::completed;
    d.attempt = 1;
    d.provider = "sms";
    d.provider_message_id = "sbx-1";
    u.updates.push_back({1, d});
    Event e;
    e.notification_id = 1;
    e.kind = herald::EventKind::accepted;
    e.attempt = 1;
    e.provider = "sms";
    e.http_status = 202;
    e.latency_us = 1500;
    u.events.push_back(e);
    store.commit(std::move(u));
  }
  Store store(dir.path, Durability::fsync);
  auto one = store.get(1);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->delivery.state, State::completed);
  EXPECT_EQ(one->delivery.provider_message_id, "sbx-1");
  EXPECT_EQ(one->notification.data_json, R"({"code":"1"})");
  auto events = store.events(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, herald::EventKind::accepted);
  EXPECT_EQ(events[0].http_status, 202);
  auto unfinished = store.load_unfinished();
  ASSERT_EQ(unfinished.size(), 1u);
  EXPECT_EQ(unfinished[0].notification.id, 2);
  EXPECT_EQ(store.max_id(), 2);
  auto hit = store.find_idempotent("default", "otp", "u1", "k1");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->id, 1);
  EXPECT_FALSE(store.find_idempotent("default", "otp", "u1", "other").has_value());
}

TEST(Store, ADuplicateKeyFailsOnlyItsOwnBatch) {
  TempDir dir;
  Store store(dir.path, Durability::process);
  store.commit(WriteBatch{{make(1, "same")}, {}, {}, {}, {}});
  std::atomic<int> failed{0}, ok{0};
  auto dup = make(2, "same");
  dup.recipient_id = "u1";  // same (tenant, type, recipient, key) as id 1
  store.submit(WriteBatch{{dup}, {}, {}, {}, {}}, [&](std::exception_ptr e, WriteBatch&) { (e ? failed : ok)++; });
  store.submit(WriteBatch{{make(3)}, {}, {}, {}, {}}, [&](std::exception_ptr e, WriteBatch&) { (e ? failed : ok)++; });
  store.flush();
  EXPECT_EQ(failed.load(), 1);
  EXPECT_EQ(ok.load(), 1);
  EXPECT_FALSE(store.get(2).has_value());
  EXPECT_TRUE(store.get(3).has_value());
}

// Rows go in 32 to a statement, the rest one by one (store_db.hpp): a batch of 70 is two full
// statements and six single rows, and each row must come back as it went in.
TEST(Store, ABatchLargerThanOneStatementKeepsEveryRowAndEvent) {
  TempDir dir;
  {
    Store store(dir.path, Durability::process);
    WriteBatch b;
    for (Id id = 1; id <= 70; ++id) b.inserts.push_back(make(id, "k" + std::to_string(id)));
    store.commit(std::move(b));
    WriteBatch u;
    for (Id id = 70; id >= 1; --id) {  // the answers' order, not the ids'
      for (const auto kind : {EventKind::sending, EventKind::accepted}) {
        Event e;
        e.notification_id = id;
        e.kind = kind;
        e.attempt = 1;
        e.provider = std::to_string(id) + "p";
        if (kind == EventKind::accepted) e.detail = std::to_string(id) + "-msg";
        u.events.push_back(e);
      }
    }
    store.commit(std::move(u));
  }
  Store store(dir.path, Durability::process);
  for (Id id = 1; id <= 70; ++id) {
    const auto row = store.get(id);
    ASSERT_TRUE(row.has_value()) << id;
    EXPECT_EQ(row->notification.recipient_id, "u" + std::to_string(id));
    EXPECT_EQ(row->notification.idempotency_key, "k" + std::to_string(id));
    const auto events = store.events(id);
    ASSERT_EQ(events.size(), 2u) << id;
    EXPECT_EQ(events[0].kind, EventKind::sending);
    EXPECT_EQ(events[1].kind, EventKind::accepted);
    EXPECT_EQ(events[1].provider, std::to_string(id) + "p");
    EXPECT_EQ(events[1].detail, std::to_string(id) + "-msg");
  }
  EXPECT_EQ(store.load_unfinished().size(), 70u);
}

// A repeated key inside a full statement of rows, and one among the single rows after them: each
// fails its own batch whole, and the batches beside it in the same commit are kept.
TEST(Store, ARepeatedKeyInAManyRowStatementFailsItsWholeBatchOnly) {
  TempDir dir;
  Store store(dir.path, Durability::process);
  store.commit(WriteBatch{{make(1, "same")}, {}, {}, {}, {}});
  auto batch_with_repeat_at = [](Id first, std::size_t at) {
    WriteBatch b;
    for (Id id = first; id < first + 40; ++id) b.inserts.push_back(make(id));
    b.inserts[at].idempotency_key = "same";
    b.inserts[at].recipient_id = "u1";  // same (tenant, type, recipient, key) as id 1
    return b;
  };
  std::atomic<int> failed{0}, ok{0};
  auto count = [&](std::exception_ptr e, WriteBatch&) { (e ? failed : ok)++; };
  store.submit(batch_with_repeat_at(100, 5), count);   // in the first statement of 32
  store.submit(batch_with_repeat_at(200, 35), count);  // among the single rows
  WriteBatch fine;
  for (Id id = 300; id < 340; ++id) fine.inserts.push_back(make(id));
  store.submit(std::move(fine), count);
  store.flush();
  EXPECT_EQ(failed.load(), 2);
  EXPECT_EQ(ok.load(), 1);
  for (const Id id : {Id{100}, Id{131}, Id{139}, Id{200}, Id{231}, Id{239}}) EXPECT_FALSE(store.get(id).has_value()) << id;
  for (Id id = 300; id < 340; ++id) EXPECT_TRUE(store.get(id).has_value()) << id;
}

TEST(Store, AFileWithTheFormerIdempotencyIndexIsIndexedAnewAndKeepsItsKeys) {
  TempDir dir;
  {
    Store store(dir.path, Durability::process);
    store.commit(WriteBatch{{make(1, "k1"), make(2, "k2")}, {}, {}, {}, {}});
  }
  const auto exec = [&](const char* sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir.path / "herald.db").c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  };
  // The file as an earlier version left it: its index with the tenant first.
  exec("DROP INDEX notifications_idempotency_by_key; "
       "CREATE UNIQUE INDEX notifications_idempotency ON notifications (tenant, type, recipient_id, idempotency_key) "
       "WHERE idempotency_key IS NOT NULL");
  {
    Store store(dir.path, Durability::process);
    const auto hit = store.find_idempotent("default", "otp", "u2", "k2");
    ASSERT_TRUE(hit.has_value());
    EXPECT_EQ(hit->id, 2);
    std::vector<std::string> keys;
    store.for_each_idempotency_key([&](std::string_view, std::string_view, std::string_view, std::string_view key) {
      keys.emplace_back(key);
    });
    EXPECT_EQ(keys.size(), 2u);
    auto dup = make(3, "k1");
    dup.recipient_id = "u1";  // the same key as notification 1
    EXPECT_THROW(store.commit(WriteBatch{{dup}, {}, {}, {}, {}}), StoreError);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir.path / "herald.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT group_concat(name) FROM (SELECT name FROM sqlite_master "
                                   "WHERE type='index' AND name LIKE 'notifications_idempotency%' ORDER BY name)",
                               -1, &s, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), "notifications_idempotency_by_key");
  sqlite3_finalize(s);
  sqlite3_close(db);
}

TEST(Store, GroupCommitFromManyThreads) {
  TempDir dir;
  Store store(dir.path, Durability::process);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) store.commit(WriteBatch{{make(t * 1000 + i + 1)}, {}, {}, {}, {}});
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(store.load_unfinished().size(), 2000u);
}

TEST(Store, WritesTheDeliveryLogAsJsonLines) {
  TempDir dir;
  {
    Store store(dir.path, Durability::process);
    store.commit(WriteBatch{{make(7)}, {}, {}, {}, {}});
    Event e;
    e.notification_id = 7;
    e.kind = herald::EventKind::sending;
    e.attempt = 1;
    e.provider = "sms";
    store.commit(WriteBatch{{}, {}, {e}, {}, {}});
  }
  const auto lines = log_lines(dir.path / "log");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find("\"event\":\"received\""), std::string::npos);
  EXPECT_NE(lines[1].find("\"event\":\"queued\""), std::string::npos);
  EXPECT_NE(lines[2].find("\"event\":\"sending\""), std::string::npos);
  EXPECT_NE(lines[2].find("\"provider\":\"sms\""), std::string::npos);
}

TEST(Store, ASubmitterHearsOfItsCommitOnlyOnceTheLogHoldsItsLines) {
  // Whoever commits and then reads the delivery log (a flush before a trace, a test, a notebook)
  // must find the batch there, and every batch committed with it.
  TempDir dir;
  Store store(dir.path, Durability::process);
  auto count_lines = [&] { return log_lines(dir.path / "log").size(); };
  std::atomic<std::size_t> seen_by_first{0};
  std::atomic<std::size_t> seen_by_second{0};
  std::atomic<int> done{0};
  Event e;
  e.notification_id = 7;
  e.kind = herald::EventKind::sending;
  // Both batches queued before the writer wakes, so they commit together: the first one's
  // submitter must already see the second one's line.
  store.submit(
      WriteBatch{{make(7)}, {}, {}, {}, {}},
      [&](std::exception_ptr, WriteBatch&) {
        seen_by_first = count_lines();
        ++done;
      },
      OnFault::fail);
  store.submit(
      WriteBatch{{}, {}, {e}, {}, {}},
      [&](std::exception_ptr, WriteBatch&) {
        seen_by_second = count_lines();
        ++done;
      },
      OnFault::fail);
  store.flush();
  ASSERT_EQ(done.load(), 2);
  EXPECT_EQ(seen_by_second.load(), 3u);  // received, queued, sending
  // Alone or together with the second, the first batch's two lines are in the log when it hears.
  EXPECT_GE(seen_by_first.load(), 2u);
}

TEST(Store, UnwritableDirectoryIsAClearError) {
  EXPECT_THROW(Store(fs::path("/proc/herald-cannot-write-here"), Durability::process), StoreError);
}

TEST(Store, OneWritingStorePerFolder) {
  TempDir dir;
  auto first = std::make_unique<Store>(dir.path, Durability::process);
  try {
    Store second(dir.path, Durability::process);
    FAIL() << "a second store opened a folder that is in use";
  } catch (const StoreError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(dir.path.string()), std::string::npos) << what;
    EXPECT_NE(what.find("pid " + std::to_string(::getpid())), std::string::npos) << what;
  }
  first->commit(WriteBatch{{make(1)}, {}, {}, {}, {}});  // the owner is untouched
  first.reset();
  Store again(dir.path, Durability::process);  // the lock went with its owner
  EXPECT_TRUE(again.get(1).has_value());
}

TEST(Store, AReadOnlyStoreReadsWhileTheOwnerWrites) {
  TempDir dir;
  Store owner(dir.path, Durability::process);
  owner.commit(WriteBatch{{make(1), make(2)}, {}, {}, {}, {}});
  StoreOptions ro;
  ro.read_only = true;
  Store reader(dir.path, ro);
  EXPECT_TRUE(reader.get(1).has_value());
  owner.commit(WriteBatch{{make(3)}, {}, {}, {}, {}});
  EXPECT_TRUE(reader.get(3).has_value());  // sees what the owner committed since
  const auto trace = reader.trace(3);
  ASSERT_EQ(trace.size(), 2u);
  EXPECT_EQ(trace[0].kind, herald::EventKind::received);
  EXPECT_EQ(trace[1].kind, herald::EventKind::queued);
  EXPECT_THROW(reader.submit(WriteBatch{{make(4)}, {}, {}, {}, {}}), StoreError);
  EXPECT_THROW((void)reader.trace(99), NotFound);
  StoreOptions missing;
  missing.read_only = true;
  EXPECT_THROW(Store(dir.path / "nothing-here", missing), StoreError);
}

namespace {

std::int64_t query_one(const fs::path& db_path, const char* sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  std::int64_t out = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK) {
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) out = sqlite3_column_int64(s, 0);
    else if (rc != SQLITE_DONE) ADD_FAILURE() << sqlite3_errmsg(db);
  } else {
    ADD_FAILURE() << sqlite3_errmsg(db);
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

Event event_of(Id id, EventKind kind) {
  Event e;
  e.notification_id = id;
  e.kind = kind;
  e.attempt = 1;
  return e;
}

}  // namespace

TEST(Store, SequenceNumbersRiseAcrossOpensFromTheKeptCeiling) {
  TempDir dir;
  const auto db = dir.path / "herald.db";
  {
    Store store(dir.path, Durability::process);
    store.commit(WriteBatch{{make(1)}, {}, {event_of(1, EventKind::sending)}, {}, {}});
  }
  const auto ceiling = [&] { return query_one(db, "SELECT value FROM store_counters WHERE name = 'seq_ceiling'"); };
  EXPECT_GT(ceiling(), query_one(db, "SELECT MAX(seq) FROM events"));
  // Also above the intake events, which only the log holds.
  std::int64_t logged = 0;
  for (const auto& line : log_lines(dir.path / "log")) {
    const auto at = line.find("\"seq\":");
    ASSERT_NE(at, std::string::npos) << line;
    logged = std::max<std::int64_t>(logged, std::stoll(line.substr(at + 6)));
  }
  EXPECT_GT(logged, 0);
  EXPECT_GT(ceiling(), logged);

  // Numbers far ahead of the clock (a clock that stepped back since): the next open starts above
  // the ceiling the last one kept, not at the clock.
  constexpr std::int64_t ahead = 4'000'000'000'000'000;
  query_one(db, "UPDATE events SET seq = seq + 4000000000000000 RETURNING 0");
  query_one(db, "UPDATE store_counters SET value = 4000000000000000 + value RETURNING 0");
  const std::int64_t kept = ceiling();
  {
    Store store(dir.path, Durability::process);
    store.commit(WriteBatch{{}, {}, {event_of(1, EventKind::accepted)}, {}, {}});
    const auto events = store.events(1);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_GT(events[0].seq, ahead);
    EXPECT_GE(events[1].seq, kept);
    EXPECT_EQ(events[1].kind, EventKind::accepted);  // read back in order
  }
  EXPECT_GT(ceiling(), query_one(db, "SELECT MAX(seq) FROM events"));

  // A file written before the ceiling was kept: one scan of the events finds where to start.
  query_one(db, "DELETE FROM store_counters RETURNING 0");
  query_one(db, "UPDATE events SET seq = seq + 1000000000000000 RETURNING 0");
  const std::int64_t highest = query_one(db, "SELECT MAX(seq) FROM events");
  {
    Store store(dir.path, Durability::process);
    store.commit(WriteBatch{{}, {}, {event_of(1, EventKind::completed)}, {}, {}});
    const auto events = store.events(1);
    ASSERT_EQ(events.size(), 3u);
    EXPECT_GT(events[2].seq, highest);
    EXPECT_EQ(events[2].kind, EventKind::completed);
  }
  EXPECT_GT(ceiling(), query_one(db, "SELECT MAX(seq) FROM events"));
}
