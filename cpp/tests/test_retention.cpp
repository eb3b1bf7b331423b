// Retention: which log segments go (pure), what a prune pass deletes from a real SQLite store, and
// refused receipts counted by kind.
#include <gtest/gtest.h>

#include "herald/clock.hpp"
#include "temp_dir.hpp"
#include "herald/rejection_tally.hpp"
#include "herald/retention.hpp"
#include "herald/store.hpp"

using namespace herald;
namespace fs = std::filesystem;
using herald::testing::TempDir;

namespace {

LogSegment segment(const char* name, std::int64_t bytes, std::int64_t modified_ms) {
  return LogSegment{fs::path("/log") / name, bytes, modified_ms};
}

Notification make(Id id) {
  Notification n;
  n.id = id;
  n.type = "otp";
  n.recipient_id = "u" + std::to_string(id);
  n.recipient_json = R"({"id":"u"})";
  n.data_json = R"({"code":"1"})";
  n.created_at_ms = now_ms();
  return n;
}

Event event(Id id, const char* kind) {
  Event e;
  e.notification_id = id;
  e.kind = parse_event_kind(kind);
  return e;
}

/// `count` notifications from `first`, each with two events; every other one final (completed), or
/// every one with `all_final`.
void fill(Store& store, Id first, int count, bool all_final = false) {
  WriteBatch b;
  for (Id id = first; id < first + count; ++id) {
    b.inserts.push_back(make(id));
    b.events.push_back(event(id, "routed"));
    b.events.push_back(event(id, "sending"));
    if (all_final || (id - first) % 2 == 0) {
      DeliveryState d;
      d.state = State::completed;
      b.updates.push_back({id, d});
    }
  }
  store.commit(std::move(b));
}

}  // namespace

TEST(Retention, SegmentsPastTheirAgeGoOldestFirstButNeverTheCurrentOne) {
  RetentionOptions limits;
  limits.log_max_age = std::chrono::milliseconds(1000);
  limits.log_max_bytes = 0;
  const std::vector<LogSegment> segs = {segment("events-1.jsonl", 10, 100), segment("events-2.jsonl", 10, 500),
                                        segment("events-3.jsonl", 10, 2500), segment("events-4.jsonl", 10, 100)};
  const auto out = segments_to_prune(segs, limits, 3000);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].filename(), "events-1.jsonl");
  EXPECT_EQ(out[1].filename(), "events-2.jsonl");
  // The newest segment is being written: never deleted, however old its last write.
  EXPECT_TRUE(segments_to_prune({segment("events-9.jsonl", 10, 1)}, limits, 1'000'000).empty());
}

TEST(Retention, SegmentsOverTheSizeGoUntilTheRestFit) {
  RetentionOptions limits;
  limits.log_max_age = std::chrono::milliseconds(0);
  limits.log_max_bytes = 250;
  const std::vector<LogSegment> segs = {segment("events-1.jsonl", 100, 1), segment("events-2.jsonl", 100, 2),
                                        segment("events-3.jsonl", 100, 3), segment("events-4.jsonl", 50, 4)};
  const auto out = segments_to_prune(segs, limits, 10);
  ASSERT_EQ(out.size(), 1u);  // 350 -> 250
  EXPECT_EQ(out[0].filename(), "events-1.jsonl");
  limits.log_max_bytes = 10;  // only the current one may stay, and it does even when too big
  EXPECT_EQ(segments_to_prune(segs, limits, 10).size(), 3u);
}

TEST(Retention, StoreLimitsFollowTheClock) {
  RetentionOptions limits;
  limits.max_age = std::chrono::milliseconds(60'000);
  limits.max_db_bytes = 123;
  const PruneLimits p = store_limits(limits, 1'000'000);
  EXPECT_EQ(p.older_than_ms, 940'000);
  EXPECT_EQ(p.max_db_bytes, 123);
  limits.max_age = std::chrono::milliseconds(0);
  EXPECT_EQ(store_limits(limits, 1'000'000).older_than_ms, 0);
}

TEST(Retention, PruneDeletesFinalNotificationsWithTheirEventsAndKeepsTheRest) {
  TempDir dir;
  Store store(dir.path, Durability::process);
  const Id first = (now_ms() - 10'000) << 16;
  fill(store, first, 5000);
  Event system;
  system.kind = herald::EventKind::receipt_rejected;
  system.ts_us = now_us() - 5'000'000;
  store.commit(WriteBatch{{}, {}, {system}, {}, {}});

  PruneLimits limits;
  limits.older_than_ms = now_ms() + 1000;  // everything final is past this cut
  limits.chunk = 700;                      // several transactions
  const PruneResult r = store.prune(limits);
  EXPECT_EQ(r.notifications, 2500u);
  EXPECT_EQ(r.events, 2u * 2500u + 1u);
  for (Id id = first; id < first + 5000; ++id) {
    const bool was_final = (id - first) % 2 == 0;
    ASSERT_EQ(store.get(id).has_value(), !was_final) << id - first;
    ASSERT_EQ(store.events(id).size(), was_final ? 0u : 2u) << id - first;
  }
  EXPECT_EQ(store.load_unfinished().size(), 2500u);
  // A second pass finds nothing more.
  EXPECT_EQ(store.prune(limits).notifications, 0u);
}

TEST(Retention, PruneByAgeKeepsWhatIsYounger) {
  TempDir dir;
  Store store(dir.path, Durability::process);
  const Id old_first = (now_ms() - 100'000) << 16;
  const Id new_first = now_ms() << 16;
  fill(store, old_first, 10);
  fill(store, new_first, 10);
  PruneLimits limits;
  limits.older_than_ms = now_ms() - 50'000;  // created 100 s ago goes, created now stays...
  // ...but rows were last written now: the age counts from the last change too, so nothing goes.
  EXPECT_EQ(store.prune(limits).notifications, 0u);
  limits.older_than_ms = now_ms() + 1;  // cut after the last write: the old and the new final ones go
  EXPECT_EQ(store.prune(limits).notifications, 10u);
}

TEST(Retention, PruneBySizeRemovesTheOldestFinalOnesUntilTheyFit) {
  TempDir dir;
  Store store(dir.path, Durability::process);
  const Id first = (now_ms() - 10'000) << 16;
  // Older notifications are final, the newest still in progress: as in a running engine.
  for (int i = 0; i < 10; ++i) fill(store, first + i * 2000, 2000, i < 8);
  const std::int64_t before = store.db_bytes();
  ASSERT_GT(before, 1 << 20);
  PruneLimits limits;
  limits.max_db_bytes = before / 2;
  const PruneResult r = store.prune(limits);
  EXPECT_GT(r.notifications, 0u);
  EXPECT_LT(r.notifications, 17'000u);  // it stopped once the rest fit
  EXPECT_LE(r.db_bytes, limits.max_db_bytes / 10 * 9);
  // Oldest first: the first final notification is gone, the newest final one is still there.
  EXPECT_FALSE(store.get(first).has_value());
  EXPECT_TRUE(store.get(first + 9 * 2000 + 1998).has_value());
  EXPECT_EQ(store.load_unfinished().size(), 2000u);  // unfinished ones are never pruned
}

TEST(RejectionTally, CountsByKindAndWritesOneEventPerKind) {
  RejectionTally t;
  for (int i = 0; i < 1000; ++i) t.add("sms", 403, "signature mismatch", "10.0.0." + std::to_string(i % 7) + ":1", 5000 + i);
  t.add("email", 401, "missing signature", "10.0.0.9:2", 7000);
  EXPECT_EQ(t.total(), 1001u);
  auto events = t.drain();
  ASSERT_EQ(events.size(), 2u);
  const Event& sms = events[1].provider == "sms" ? events[1] : events[0];
  EXPECT_EQ(sms.kind, herald::EventKind::receipt_rejected);
  EXPECT_EQ(sms.notification_id, 0);
  EXPECT_EQ(sms.http_status, 403);
  EXPECT_EQ(sms.detail.rfind("1000 receipts refused: signature mismatch", 0), 0u) << sms.detail;
  EXPECT_EQ(sms.ts_us, 5999 * 1000);
  EXPECT_TRUE(t.empty());
  EXPECT_TRUE(t.drain().empty());
}

TEST(RejectionTally, KindsAreBoundedWhateverTheCallerSends) {
  RejectionTally t;
  for (int i = 0; i < 10'000; ++i) {
    t.add("provider-" + std::to_string(i) + std::string(500, 'p'), 404, "no provider takes receipts", "x", i);
  }
  auto events = t.drain();
  EXPECT_EQ(events.size(), RejectionTally::max_kinds + 1);
  std::size_t counted = 0;
  for (const auto& e : events) {
    EXPECT_LE(e.provider.size(), RejectionTally::max_text + 3);
    counted += std::stoul(e.detail.substr(0, e.detail.find(' ')));
  }
  EXPECT_EQ(counted, 10'000u);
}

TEST(Retention, APassDeletesOldSegmentFilesButNeverTheOneBeingWritten) {
  TempDir dir;
  Store store(dir.path, Durability::process);
  const fs::path log = dir.path / "old-log";
  fs::create_directories(log);
  for (int i = 1; i <= 5; ++i) {
    std::FILE* f = std::fopen((log / ("events-0000000000000000000" + std::to_string(i) + ".jsonl")).c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string line(1000, 'x');
    std::fwrite(line.data(), 1, line.size(), f);
    std::fclose(f);
  }
  std::FILE* other = std::fopen((log / "notes.txt").c_str(), "wb");  // not a segment: left alone
  std::fclose(other);
  RetentionOptions limits;
  limits.max_age = std::chrono::milliseconds(0);
  limits.max_db_bytes = 0;
  limits.log_max_age = std::chrono::milliseconds(0);
  limits.log_max_bytes = 2500;
  const PruneReport r = prune_once(store, log, limits, now_ms());
  EXPECT_EQ(r.segments, 3u);  // 5,000 bytes -> 2,000
  EXPECT_EQ(r.segment_bytes, 3000);
  EXPECT_EQ(r.log_bytes, 2000);
  EXPECT_FALSE(fs::exists(log / "events-00000000000000000001.jsonl"));
  EXPECT_TRUE(fs::exists(log / "events-00000000000000000005.jsonl"));
  EXPECT_TRUE(fs::exists(log / "notes.txt"));
  limits.log_max_bytes = 1;
  EXPECT_EQ(prune_once(store, log, limits, now_ms()).segments, 1u);  // the newest stays
  EXPECT_TRUE(fs::exists(log / "events-00000000000000000005.jsonl"));
}
