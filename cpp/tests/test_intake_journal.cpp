#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "herald/clock.hpp"
#include "herald/delivery_log.hpp"
#include "herald/errors.hpp"
#include "herald/event.hpp"
#include "herald/intake_journal.hpp"
#include "herald/store.hpp"
#include "log_lines.hpp"
#include "temp_dir.hpp"
#include "tmpfs_support.hpp"

using namespace herald;
namespace fs = std::filesystem;
using herald::testing::TempDir;
using herald::testing::log_lines;

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

std::vector<Notification> rows_in(std::vector<JournalRecord> records) {
  std::vector<Notification> rows;
  for (auto& r : records) {
    for (auto& n : r.rows) rows.push_back(std::move(n));
  }
  return rows;
}

std::vector<Notification> recover_rows(const fs::path& dir) { return rows_in(IntakeJournal(dir).recover()); }

/// A "sending" mark as the engine journals it: the attempt's state and its event.
SendingMark sending_mark(Id id, int attempt) {
  SendingMark m;
  m.update.id = id;
  m.update.delivery.state = State::sending;
  m.update.delivery.attempt = attempt;
  m.update.delivery.provider_attempt = attempt;
  m.update.delivery.provider = "sms-primary";
  m.update.delivery.channel = "sms";
  m.update.delivery.address = "+15550100";
  Event e = make_event(row(id), attempt, EventKind::sending);
  e.ts_us = 1'800'000'000'000'000 + attempt;
  e.provider = "sms-primary";
  e.channel = "sms";
  m.events.push_back(e);
  return m;
}

/// The mark as the engine writes it on its own (held too long, or on close).
WriteBatch written(const SendingMark& m, std::uint64_t ticket) {
  WriteBatch b;
  b.updates.push_back(m.update);
  b.events = m.events;
  b.settles.push_back(ticket);
  return b;
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
  const auto rows = rows_in(again.recover());
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
  const auto rows = recover_rows(dir);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, 1);
  EXPECT_EQ(rows[1].id, 3);
}

TEST(IntakeJournal, DecodeRefusesAPayloadThatIsNotWhole) {
  std::string payload;
  IntakeJournal::encode({row(1)}, {sending_mark(1, 1)}, payload);
  JournalRecord out;
  EXPECT_TRUE(IntakeJournal::decode(payload, out));
  EXPECT_EQ(out.rows.size(), 1u);
  EXPECT_EQ(out.marks.size(), 1u);
  JournalRecord untouched;
  EXPECT_FALSE(IntakeJournal::decode(std::string_view(payload).substr(0, payload.size() - 1), untouched));
  EXPECT_FALSE(IntakeJournal::decode(payload + "x", untouched));
  EXPECT_TRUE(untouched.marks.empty());
}

TEST(IntakeJournal, SendingMarksRoundTripWithEveryField) {
  TempDir dir;
  SendingMark mark = sending_mark(5, 3);
  DeliveryState& d = mark.update.delivery;
  d.provider_index = 1;
  d.next_at_ms = -7;
  d.accepted_at_ms = 1'800'000'000'123;
  d.cost = 0.0075;
  d.in_doubt = true;
  d.provider_message_id = "SM1";
  d.last_error = "HTTP 503 \"busy\"";
  Event& e = mark.events[0];
  e.latency_us = 1234;
  e.http_status = 202;
  e.detail = "in a batch of 2";
  e.error_class = ErrorClass::rate_limited;
  e.cost = 0.25;
  e.step = 1;
  e.provider_code = "21211";
  e.segments = 2;
  e.alert = "a";
  {
    IntakeJournal j(dir.path);
    j.append({}, {mark, sending_mark(6, 1)});
    EXPECT_EQ(j.open_records(), 2u);  // each mark is settled on its own
  }
  const auto records = IntakeJournal(dir.path).recover();
  ASSERT_EQ(records.size(), 1u);
  ASSERT_EQ(records[0].marks.size(), 2u);
  EXPECT_EQ(records[0].marks[1].update.id, 6);
  const SendingMark& r = records[0].marks[0];
  const StateUpdate& u = r.update;
  EXPECT_EQ(u.id, 5);
  EXPECT_EQ(u.delivery.state, State::sending);
  EXPECT_EQ(u.delivery.attempt, 3);
  EXPECT_EQ(u.delivery.provider_attempt, 3);
  EXPECT_EQ(u.delivery.provider_index, 1);
  EXPECT_EQ(u.delivery.next_at_ms, -7);
  EXPECT_EQ(u.delivery.accepted_at_ms, 1'800'000'000'123);
  EXPECT_EQ(u.delivery.cost, 0.0075);
  EXPECT_TRUE(u.delivery.in_doubt);
  EXPECT_EQ(u.delivery.provider, "sms-primary");
  EXPECT_EQ(u.delivery.provider_message_id, "SM1");
  EXPECT_EQ(u.delivery.last_error, d.last_error);
  EXPECT_EQ(u.delivery.channel, "sms");
  EXPECT_EQ(u.delivery.address, "+15550100");
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(DeliveryLog::to_json_line(r.events[0]), DeliveryLog::to_json_line(e));  // every field the log writes
}

TEST(IntakeJournal, AFileWithMarksGoesOnceEachMarkIsSettled) {
  TempDir dir;
  IntakeJournal j(dir.path, 1);  // each record starts a new file
  const auto a = j.append({}, {sending_mark(1, 1), sending_mark(2, 1)});
  const auto b = j.append({row(3)});
  j.committed(a);
  EXPECT_EQ(journal_files(dir.path).size(), 2u);  // one of a's two marks is still open
  j.committed(a);
  EXPECT_EQ(journal_files(dir.path).size(), 1u);
  j.committed(b);
  EXPECT_EQ(j.open_records(), 0u);
}

/// A record as HJR1 and HJR2 wrote it: `magic`, the payload's length, its FNV-1a (64 bits).
std::string record_with_fnv(const char* magic, const std::string& payload) {
  std::uint64_t sum = 14695981039346656037ULL;
  for (const char c : payload) {
    sum ^= static_cast<unsigned char>(c);
    sum *= 1099511628211ULL;
  }
  std::string record = magic;
  for (int i = 0; i < 4; ++i) record += static_cast<char>((payload.size() >> (8 * i)) & 0xff);
  for (int i = 0; i < 8; ++i) record += static_cast<char>((sum >> (8 * i)) & 0xff);
  return record + payload;
}

TEST(IntakeJournal, RecordsOfTheFirstFormatStillRecover) {
  // HJR1 (before sending marks): the payload is the rows alone.
  TempDir dir;
  std::string payload;
  const Notification original = row(1, "k1");
  IntakeJournal::encode({original}, {}, payload);
  payload.resize(payload.size() - 4);  // without the count of marks (0)
  std::ofstream(dir.path / "intake-1.bin", std::ios::binary) << record_with_fnv("HJR1", payload);
  const auto rows = recover_rows(dir.path);
  ASSERT_EQ(rows.size(), 1u);
  expect_same(rows[0], original);
}

TEST(IntakeJournal, RecordsOfTheSecondFormatStillRecover) {
  // HJR2 (before the word checksum): rows and marks, checked by FNV-1a.
  TempDir dir;
  std::string payload;
  const Notification original = row(1, "k1");
  IntakeJournal::encode({original}, {sending_mark(1, 2)}, payload);
  std::ofstream(dir.path / "intake-1.bin", std::ios::binary) << record_with_fnv("HJR2", payload);
  IntakeJournal j(dir.path);
  const auto records = j.recover();
  ASSERT_EQ(records.size(), 1u);
  ASSERT_EQ(records[0].rows.size(), 1u);
  expect_same(records[0].rows[0], original);
  ASSERT_EQ(records[0].marks.size(), 1u);
  EXPECT_EQ(records[0].marks[0].update.id, 1);
  EXPECT_EQ(records[0].marks[0].update.delivery.attempt, 2);
}

TEST(IntakeJournal, EveryFlippedBitAndEveryPairOfFlippedTopBitsEndsTheReplay) {
  TempDir dir;
  {
    IntakeJournal j(dir.path);
    j.append({row(1, "k1")}, {sending_mark(1, 1)});
  }
  const auto file = journal_files(dir.path).at(0);
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  ASSERT_EQ(bytes.substr(0, 4), "HJR3");
  constexpr std::size_t header = 16;
  const auto recovers_after = [&](const std::vector<std::pair<std::size_t, int>>& flips) {
    std::string changed = bytes;
    for (const auto& [at, bit] : flips) changed[at] = static_cast<char>(changed[at] ^ (1 << bit));
    std::ofstream(file, std::ios::binary | std::ios::trunc) << changed;
    return IntakeJournal(dir.path).recover().size();
  };
  ASSERT_EQ(recovers_after({}), 1u);
  for (std::size_t at = header; at < bytes.size(); ++at) {
    for (int bit = 0; bit < 8; ++bit) ASSERT_EQ(recovers_after({{at, bit}}), 0u) << "byte " << at << " bit " << bit;
  }
  // The top bit of two different words: a multiply alone would carry neither change further.
  for (std::size_t a = header + 7; a < bytes.size(); a += 8) {
    for (std::size_t b = a + 8; b < bytes.size(); b += 8) {
      ASSERT_EQ(recovers_after({{a, 7}, {b, 7}}), 0u) << "bytes " << a << " and " << b;
    }
  }
}

TEST(StoreJournal, ASendingMarkNeverWrittenIsAppliedOnOpenAndOneWrittenIsNot) {
  TempDir dir;
  {
    Store store(dir.path, Durability::process);
    WriteBatch b;
    b.inserts.push_back(row(1));
    b.inserts.push_back(row(2));
    b.inserts.push_back(row(3));
    store.commit(std::move(b));
    // A process that dies with three marks in one record: row 2's was written (as is), row 3's
    // was superseded by its answer; row 1's was still held.
    const std::uint64_t ticket = store.journal_marks({sending_mark(1, 1), sending_mark(2, 1), sending_mark(3, 1)});
    ASSERT_NE(ticket, 0u);
    store.commit(written(sending_mark(2, 1), ticket));
    WriteBatch answer;
    StateUpdate done = sending_mark(3, 1).update;
    done.delivery.state = State::completed;
    answer.updates.push_back(done);
    answer.events = sending_mark(3, 1).events;
    answer.settles.push_back(ticket);
    store.commit(std::move(answer));
  }
  Store store(dir.path, Durability::process);
  const auto one = store.get(1);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->delivery.state, State::sending);  // recovery then finds the attempt in doubt
  EXPECT_EQ(one->delivery.attempt, 1);
  EXPECT_EQ(one->delivery.provider, "sms-primary");
  EXPECT_EQ(store.get(3)->delivery.state, State::completed);  // not set back to sending
  auto sending_events = [&](Id id) {
    std::size_t n = 0;
    for (const Event& e : store.trace(id)) n += e.kind == EventKind::sending ? 1 : 0;
    return n;
  };
  EXPECT_EQ(sending_events(1), 1u);
  EXPECT_EQ(sending_events(2), 1u);  // not twice
  EXPECT_EQ(sending_events(3), 1u);
  EXPECT_TRUE(journal_files(dir.path / "journal").empty());
}

TEST(StoreJournal, TheJournalEmptiesOnceEveryMarkIsWritten) {
  TempDir dir;
  Store store(dir.path, Durability::process);
  WriteBatch rows;
  rows.inserts = {row(1), row(2)};
  store.commit(std::move(rows));
  const std::uint64_t ticket = store.journal_marks({sending_mark(1, 1), sending_mark(2, 1)});
  ASSERT_NE(ticket, 0u);
  store.commit(written(sending_mark(1, 1), ticket));
  auto bytes = [&] {
    std::uintmax_t n = 0;
    for (const auto& f : journal_files(dir.path / "journal")) n += fs::file_size(f);
    return n;
  };
  EXPECT_GT(bytes(), 0u);
  store.commit(written(sending_mark(2, 1), ticket));
  EXPECT_EQ(bytes(), 0u);
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
  for (const auto& line : log_lines(dir.path / "log")) {
    if (line.find("\"event\":\"received\"") == std::string::npos) continue;
    if (line.find("\"id\":\"2\"") != std::string::npos) ++received_2;
    if (line.find("\"id\":\"1\"") != std::string::npos) ++received_1;
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
  EXPECT_EQ(store.journal_marks({sending_mark(1, 1)}), 0u);
}
