#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "herald/clock.hpp"
#include "herald/delivery_log.hpp"
#include "herald/errors.hpp"
#include "herald/intake_journal.hpp"
#include "herald/store.hpp"
#include "temp_dir.hpp"
#include "tmpfs_support.hpp"

using namespace herald;
namespace fs = std::filesystem;
using herald::testing::TempDir;

namespace {

Notification row(Id id, std::string key = {}) {
  Notification n;
  n.id = id;
  n.tenant = "acme";
  n.type = "otp";
  n.recipient_id = "u" + std::to_string(id);
  n.recipient_json = R"({"id":"u)" + std::to_string(id) + R"(","phone":"+15550100"})";
  n.data_json = R"({"code":"caf\u00e9 \"1\""})";
  n.priority = Priority::critical;
  n.idempotency_key = std::move(key);
  n.ordering_key = "order-" + std::to_string(id % 3);
  n.send_at_ms = 1'800'000'000'000 + id;
  n.expires_at_ms = -1;  // any 64-bit value round-trips
  n.created_at_ms = now_ms();
  n.step = id % 2 == 0 ? 0 : -1;
  return n;
}

std::vector<fs::path> journal_files(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
  return out;
}

void expect_same(const Notification& a, const Notification& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.tenant, b.tenant);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.recipient_id, b.recipient_id);
  EXPECT_EQ(a.recipient_json, b.recipient_json);
  EXPECT_EQ(a.data_json, b.data_json);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.idempotency_key, b.idempotency_key);
  EXPECT_EQ(a.ordering_key, b.ordering_key);
  EXPECT_EQ(a.send_at_ms, b.send_at_ms);
  EXPECT_EQ(a.expires_at_ms, b.expires_at_ms);
  EXPECT_EQ(a.created_at_ms, b.created_at_ms);
  EXPECT_EQ(a.parent_id, b.parent_id);
  EXPECT_EQ(a.step, b.step);
}

}  // namespace

TEST(IntakeJournal, RecordsLeftByAProcessAreRecoveredWithEveryField) {
  TempDir dir;
  const std::vector<Notification> first = {row(1, "k1"), row(2)};
  const std::vector<Notification> second = {row(3, "k3")};
  {
    IntakeJournal j(dir.path);
    j.append(first);
    j.append(second);
    EXPECT_EQ(j.open_records(), 2u);
  }  // never committed: the files stay
  IntakeJournal again(dir.path);
  const auto rows = again.recover();
  ASSERT_EQ(rows.size(), 3u);
  expect_same(rows[0], first[0]);
  expect_same(rows[1], first[1]);
  expect_same(rows[2], second[0]);
  again.discard_recovered();
  EXPECT_TRUE(journal_files(dir.path).empty());
}

TEST(IntakeJournal, ATornOrCorruptRecordEndsTheReplayOfItsFile) {
  TempDir dir;
  {
    IntakeJournal j(dir.path);
    j.append({row(1)});
    j.append({row(2)});
  }
  const auto files = journal_files(dir.path);
  ASSERT_EQ(files.size(), 1u);
  const auto size = fs::file_size(files[0]);
  fs::resize_file(files[0], size - 3);  // the second write torn by a crash
  EXPECT_EQ(IntakeJournal(dir.path).recover().size(), 1u);
  {
    std::fstream f(files[0], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);  // inside the first record's payload: its checksum no longer matches
    f.put('\x7f');
  }
  EXPECT_TRUE(IntakeJournal(dir.path).recover().empty());
}

TEST(IntakeJournal, AFileGoesOnceEveryRecordInItIsCommitted) {
  TempDir dir;
  IntakeJournal j(dir.path, 100);  // tiny files: each record starts a new one
  const auto a = j.append({row(1)});
  const auto b = j.append({row(2)});
  const auto c = j.append({row(3)});
  EXPECT_NE(a, b);
  EXPECT_EQ(journal_files(dir.path).size(), 3u);
  j.committed(b);
  EXPECT_EQ(journal_files(dir.path).size(), 2u);
  j.committed(a);
  j.committed(c);  // the newest is kept, cut back to nothing
  const auto left = journal_files(dir.path);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(fs::file_size(left[0]), 0u);
  EXPECT_EQ(j.open_records(), 0u);
}

TEST(IntakeJournal, AFullDiskRefusesTheAppendNamingTheFileAndLeavesNoPartialRecord) {
  herald::testing::Tmpfs disk(256 * 1024);
  const fs::path dir = disk.path() / "journal";
  IntakeJournal j(dir);
  j.append({row(1)});
  disk.fill();
  Notification big = row(2);
  big.data_json.assign(64 * 1024, 'x');
  try {
    j.append({big});
    FAIL() << "the append succeeded on a full disk";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.string()), std::string::npos) << e.what();
  }
  disk.free_space();
  j.append({row(3)});
  const auto rows = IntakeJournal(dir).recover();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, 1);
  EXPECT_EQ(rows[1].id, 3);
}

TEST(IntakeJournal, DecodeRefusesAPayloadThatIsNotWhole) {
  std::string payload;
  IntakeJournal::encode({row(1)}, payload);
  std::vector<Notification> out;
  EXPECT_TRUE(IntakeJournal::decode(payload, out));
  EXPECT_FALSE(IntakeJournal::decode(std::string_view(payload).substr(0, payload.size() - 1), out));
  EXPECT_FALSE(IntakeJournal::decode(payload + "x", out));
  EXPECT_EQ(out.size(), 1u);
}

TEST(StoreJournal, AStoreInsertsWhatADeadProcessJournaledOnceAndLogsItsIntake) {
  TempDir dir;
  {
    Store store(dir.path, Durability::process);
    WriteBatch b;
    b.inserts.push_back(row(1, "k1"));
    store.commit(std::move(b));  // committed before the "crash"
  }
  {
    // What a process that died between its journal write and its commit leaves: row 1 again
    // (committed already) and row 2 (only in the journal).
    IntakeJournal j(dir.path / "journal");
    j.append({row(1, "k1"), row(2, "k2")});
  }
  {
    Store store(dir.path, Durability::process);
    ASSERT_TRUE(store.get(1).has_value());
    const auto two = store.get(2);
    ASSERT_TRUE(two.has_value());
    EXPECT_EQ(two->notification.data_json, row(2).data_json);
    EXPECT_EQ(two->delivery.state, State::queued);
    EXPECT_TRUE(store.find_idempotent("acme", "otp", "u2", "k2").has_value());
    EXPECT_EQ(store.load_unfinished().size(), 2u);
  }
  EXPECT_TRUE(journal_files(dir.path / "journal").empty());
  // The log has row 2's intake once (row 1's came with its own commit, and is not repeated).
  std::size_t received_2 = 0, received_1 = 0;
  for (const auto& e : fs::directory_iterator(dir.path / "log")) {
    std::ifstream in(e.path());
    for (std::string line; std::getline(in, line);) {
      if (line.find("\"event\":\"received\"") == std::string::npos) continue;
      if (line.find("\"id\":\"2\"") != std::string::npos) ++received_2;
      if (line.find("\"id\":\"1\"") != std::string::npos) ++received_1;
    }
  }
  EXPECT_EQ(received_2, 1u);
  EXPECT_EQ(received_1, 1u);
}

TEST(StoreJournal, AJournaledRowIsReadableAtOnceAndTheJournalEmptiesAfterItsCommit) {
  TempDir dir;
  Store store(dir.path, Durability::process);
  WriteBatch b;
  b.inserts.push_back(row(7, "k7"));
  std::atomic<bool> committed{false};
  DeliveryStore::Done done = [&](std::exception_ptr err, WriteBatch& w) {
    EXPECT_FALSE(err);
    EXPECT_EQ(w.inserts.size(), 1u);
    committed = true;
  };
  ASSERT_TRUE(store.submit_journaled(b, done));
  const auto r = store.get(7);  // committed or not, it is there
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->notification.idempotency_key, "k7");
  store.flush();
  EXPECT_TRUE(committed.load());
  EXPECT_FALSE(store.has_journaled());
  for (const auto& f : journal_files(dir.path / "journal")) EXPECT_EQ(fs::file_size(f), 0u) << f;
}

TEST(StoreJournal, NoJournalWithFsyncDurability) {
  TempDir dir;
  Store store(dir.path, Durability::fsync);
  WriteBatch b;
  b.inserts.push_back(row(1));
  DeliveryStore::Done done;
  EXPECT_FALSE(store.submit_journaled(b, done));
  EXPECT_EQ(b.inserts.size(), 1u);  // untouched: the caller commits it the usual way
}
