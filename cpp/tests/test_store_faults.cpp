// The store on a real full filesystem (a tmpfs mounted by the test): what the disk refuses is held
// and committed in order once space returns; waiters hear of the fault; nothing is half written.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "herald/clock.hpp"
#include "herald/delivery_log.hpp"
#include "herald/errors.hpp"
#include "herald/store.hpp"
#include "eventually.hpp"
#include "log_lines.hpp"
#include "tmpfs_support.hpp"

using namespace herald;
using herald::testing::Tmpfs;
using herald::testing::eventually;
using herald::testing::log_lines;
namespace fs = std::filesystem;

namespace {

Notification make(Id id, std::size_t data_bytes = 10) {
  Notification n;
  n.id = id;
  n.type = "otp";
  n.recipient_id = "u" + std::to_string(id);
  n.recipient_json = R"({"id":"u)" + std::to_string(id) + "\"}";
  n.data_json = R"({"code":")" + std::string(data_bytes, 'd') + "\"}";
  n.created_at_ms = now_ms();
  return n;
}

/// Fills the disk, then commits notifications until the store refuses one, first large ones, then
/// small ones: a refused transaction leaves the WAL's file as long as it got, and a later, smaller
/// one may still fit there. Afterwards less room is left than one small insert needs (a few pages).
/// Returns 1 when both sizes were refused.
int exhaust(Tmpfs& disk, Store& store, Id& next_id) {
  disk.fill();
  int refused = 0;
  for (std::size_t size : {std::size_t{32} << 10, std::size_t{10}}) {
    for (int i = 0; i < 5000; ++i) {
      try {
        store.commit(WriteBatch{{make(next_id++, size)}, {}, {}, {}, {}});
      } catch (const StoreError&) {
        ++refused;
        break;
      }
    }
  }
  return refused == 2 ? 1 : 0;
}

}  // namespace

TEST(StoreFaults, HeldWritesCommitInOrderOnceSpaceReturns) {
  Tmpfs disk(6 << 20);
  StoreOptions options;
  options.retry_max = std::chrono::milliseconds(100);
  Store store(disk.path() / "data", options);
  WriteBatch intake;
  for (Id id = 1; id <= 50; ++id) intake.inserts.push_back(make(id));
  store.commit(std::move(intake));

  Id next_id = 1000;
  ASSERT_EQ(exhaust(disk, store, next_id), 1) << "the disk never refused a write";
  EXPECT_TRUE(store.health().degraded);
  EXPECT_NE(store.health().error.find("full"), std::string::npos) << store.health().error;

  // The engine's own records: held, not failed, while the disk is full.
  std::atomic<int> committed{0}, failed{0};
  WriteBatch outcome;
  for (Id id = 1; id <= 50; ++id) {
    DeliveryState d;
    d.state = State::completed;
    d.attempt = 1;
    d.provider = "sms";
    outcome.updates.push_back({id, d});
    Event e;
    e.notification_id = id;
    e.kind = herald::EventKind::completed;
    e.detail = std::string(2000, 'r');  // the batch needs far more pages than a refusal can leave
    outcome.events.push_back(e);
  }
  store.submit(std::move(outcome), [&](std::exception_ptr err, WriteBatch&) { (err ? failed : committed)++; });
  const auto faults = store.health().write_faults;
  ASSERT_TRUE(eventually([&] { return store.health().write_faults >= faults + 3; }, std::chrono::seconds(20))) << "no retries while full";
  EXPECT_EQ(committed.load(), 0);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GE(store.health().held_batches, 1u);
  // What the store says stays true: nothing of the held batch is visible.
  EXPECT_EQ(store.get(1)->delivery.state, State::queued);
  EXPECT_TRUE(store.events(1).empty());
  // A caller that waits on the outcome hears of the fault at once.
  EXPECT_THROW(store.flush(), StoreError);

  disk.free_space();
  ASSERT_TRUE(eventually([&] { return committed.load() == 1; }, std::chrono::seconds(20))) << "held writes never committed";
  EXPECT_EQ(failed.load(), 0);
  // The recovery is noted just after the held batch's callback has run, and only then is the
  // episode queued for the log: wait until the log has it (a flush at once could come first).
  const auto logged = [&](const std::string& kind) {
    const auto lines = log_lines(store.log_dir());
    return std::count_if(lines.begin(), lines.end(), [&](const std::string& line) {
      return line.find("\"event\":\"" + kind + "\"") != std::string::npos;
    });
  };
  ASSERT_TRUE(eventually([&] { return logged("store_recovered") > 0; }, std::chrono::seconds(20)))
      << "the recovery never reached the log";
  EXPECT_FALSE(store.health().degraded);
  store.flush();
  for (Id id = 1; id <= 50; ++id) {
    ASSERT_EQ(store.get(id)->delivery.state, State::completed) << id;
    ASSERT_EQ(store.events(id).size(), 1u) << id;
  }
  // The episode is in the log, and every line of the log is whole.
  const auto lines = log_lines(store.log_dir());
  int degraded = 0, recovered = 0;
  for (const auto& line : lines) {
    ASSERT_FALSE(line.empty());
    ASSERT_EQ(line.front(), '{') << line;
    ASSERT_EQ(line.back(), '}') << line;
    degraded += line.find("\"event\":\"store_degraded\"") != std::string::npos;
    recovered += line.find("\"event\":\"store_recovered\"") != std::string::npos;
  }
  EXPECT_EQ(degraded, 1);
  EXPECT_EQ(recovered, 1);
}

TEST(StoreFaults, OpensOnAFullDiskAndWritesWhenSpaceReturns) {
  Tmpfs disk(4 << 20);
  const auto dir = disk.path() / "data";
  {
    Store store(dir, StoreOptions{});
    WriteBatch b;
    for (Id id = 1; id <= 20; ++id) b.inserts.push_back(make(id));
    store.commit(std::move(b));
  }
  ASSERT_TRUE(fs::exists(dir / ".reserve"));
  disk.fill();
  ASSERT_LT(disk.available(), 8192u);

  Store store(dir, StoreOptions{});  // gives up its reserve to map the WAL index
  ASSERT_TRUE(store.get(7).has_value());
  EXPECT_EQ(store.load_unfinished().size(), 20u);
  disk.free_space();
  store.commit(WriteBatch{{make(21)}, {}, {}, {}, {}});
  EXPECT_TRUE(store.get(21).has_value());
  store.prune(PruneLimits{});  // a maintenance pass sets the reserve aside again
  EXPECT_TRUE(fs::exists(dir / ".reserve"));
}

TEST(StoreFaults, TheDeliveryLogKeepsLinesWholeOnAFullDisk) {
  Tmpfs disk(1 << 20);
  DeliveryLog log(disk.path() / "log", 64 << 20);
  Event e;
  e.kind = herald::EventKind::sending;
  e.detail = std::string(300, 'x');
  int written = 0;
  for (; written < 200; ++written) {
    e.seq = written + 1;
    log.append(e);
  }
  ASSERT_TRUE(log.flush());
  disk.fill();
  for (; written < 2000; ++written) {
    e.seq = written + 1;
    log.append(e);
  }
  EXPECT_FALSE(log.flush());
  disk.free_space();
  EXPECT_TRUE(log.flush());
  EXPECT_EQ(log.dropped_lines(), 0u);
  const auto lines = log_lines(disk.path() / "log");
  ASSERT_EQ(lines.size(), 2000u);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    ASSERT_EQ(lines[i], DeliveryLog::to_json_line([&] {
      Event x = e;
      x.seq = static_cast<std::int64_t>(i + 1);
      return x;
    }())) << i;
  }
}

TEST(StoreFaults, HealthRecoversByItselfWhenOnlyIntakeWasRefused) {
  Tmpfs disk(4 << 20);
  StoreOptions options;
  options.retry_max = std::chrono::milliseconds(100);
  Store store(disk.path() / "data", options);
  Id next_id = 1;
  ASSERT_EQ(exhaust(disk, store, next_id), 1);
  ASSERT_TRUE(store.health().degraded);
  EXPECT_EQ(store.health().held_batches, 0u);  // nothing of the store's own was waiting
  disk.free_space();
  // No traffic: the store probes the disk at each retry and says so when it takes writes again.
  EXPECT_TRUE(eventually([&] { return !store.health().degraded; }, std::chrono::seconds(20)));
  store.commit(WriteBatch{{make(next_id++)}, {}, {}, {}, {}});
}

TEST(StoreFaults, AProbeThatFitsOnAnAlmostFullDiskDoesNotEndTheEpisode) {
  Tmpfs disk(4 << 20);
  StoreOptions options;
  options.retry_max = std::chrono::milliseconds(50);
  Store store(disk.path() / "data", options);
  Id next_id = 1;
  ASSERT_EQ(exhaust(disk, store, next_id), 1);
  ASSERT_TRUE(store.health().degraded);
  // Room for the probe's one row, but far less than the reserve: the store keeps saying it is
  // degraded instead of flapping between refused and taken at every retry.
  disk.give_back(128 << 10);
  const auto faults = store.health().write_faults;
  ASSERT_TRUE(eventually([&] { return store.health().write_faults >= faults + 3; }, std::chrono::seconds(20)))
      << "no retries while nearly full";
  EXPECT_TRUE(store.health().degraded);
  EXPECT_NE(store.health().error.find("bytes free"), std::string::npos) << store.health().error;
  disk.free_space();
  EXPECT_TRUE(eventually([&] { return !store.health().degraded; }, std::chrono::seconds(20)));
  store.flush();
  int recovered = 0;
  for (const auto& line : log_lines(store.log_dir()))
    recovered += line.find("\"event\":\"store_recovered\"") != std::string::npos;
  EXPECT_EQ(recovered, 1);
}
