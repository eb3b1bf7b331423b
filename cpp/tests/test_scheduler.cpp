#include <gtest/gtest.h>

#include <map>

#include "herald/scheduler.hpp"

using herald::Id;
using herald::Priority;
using herald::Scheduler;

TEST(Scheduler, CriticalAlwaysFirst) {
  Scheduler s;
  for (Id i = 1; i <= 50; ++i) s.add(i, Priority::bulk, 0);
  s.add(100, Priority::critical, 0);
  s.add(101, Priority::critical, 0);
  auto out = s.pop_ready(1000, 3);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], 100);
  EXPECT_EQ(out[1], 101);
  EXPECT_EQ(out[2], 1);
}

TEST(Scheduler, WeightedLanesNeverStarveBulk) {
  Scheduler s({8, 4, 1});
  Id next = 1;
  for (int i = 0; i < 1000; ++i) s.add(next++, Priority::high, 0);
  for (int i = 0; i < 1000; ++i) s.add(next++, Priority::normal, 0);
  for (int i = 0; i < 1000; ++i) s.add(next++, Priority::bulk, 0);
  auto out = s.pop_ready(1000, 130);
  std::map<int, int> per_lane;
  for (Id id : out) per_lane[static_cast<int>((id - 1) / 1000)]++;
  // 10 full rounds of 8:4:1.
  EXPECT_EQ(per_lane[0], 80);
  EXPECT_EQ(per_lane[1], 40);
  EXPECT_EQ(per_lane[2], 10);
}

TEST(Scheduler, FifoWithinALane) {
  Scheduler s;
  for (Id i = 1; i <= 10; ++i) s.add(i, Priority::normal, 0);
  auto out = s.pop_ready(0, 10);
  ASSERT_EQ(out.size(), 10u);
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], static_cast<Id>(i + 1));
}

TEST(Scheduler, DelayedItemsWaitForTheirTime) {
  Scheduler s;
  s.add(1, Priority::critical, 5000);
  s.add(2, Priority::bulk, 0);
  EXPECT_EQ(s.next_due().value(), 5000);
  auto early = s.pop_ready(4999, 10);
  ASSERT_EQ(early.size(), 1u);
  EXPECT_EQ(early[0], 2);
  auto due = s.pop_ready(5000, 10);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0], 1);
}

TEST(Scheduler, OrderingKeyHoldsTheNextUntilFinished) {
  Scheduler s;
  s.add(1, Priority::normal, 0, "order-7");
  s.add(2, Priority::critical, 0, "order-7");  // even critical waits behind its key
  s.add(3, Priority::normal, 0, "order-8");
  auto first = s.pop_ready(0, 10);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0], 1);
  EXPECT_EQ(first[1], 3);
  EXPECT_TRUE(s.pop_ready(0, 10).empty());
  s.finish(1);
  auto second = s.pop_ready(0, 10);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0], 2);
}

TEST(Scheduler, DeferKeepsTheOrderingKey) {
  Scheduler s;
  s.add(1, Priority::normal, 0, "k");
  s.add(2, Priority::normal, 0, "k");
  ASSERT_EQ(s.pop_ready(0, 10).size(), 1u);
  s.defer(1, 100);  // a retry: 2 must still wait
  EXPECT_TRUE(s.pop_ready(50, 10).empty());
  auto retry = s.pop_ready(100, 10);
  ASSERT_EQ(retry.size(), 1u);
  EXPECT_EQ(retry[0], 1);
  s.finish(1);
  auto next = s.pop_ready(100, 10);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0], 2);
}

TEST(Scheduler, FinishedWhileQueuedIsSkipped) {
  Scheduler s;
  s.add(1, Priority::normal, 0);
  s.add(2, Priority::normal, 0);
  s.finish(1);  // cancelled
  auto out = s.pop_ready(0, 10);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], 2);
  EXPECT_EQ(s.size(), 1u);
}

TEST(Scheduler, CancelledWaiterLeavesTheKeyQueue) {
  Scheduler s;
  s.add(1, Priority::normal, 0, "k");
  s.add(2, Priority::normal, 0, "k");
  s.add(3, Priority::normal, 0, "k");
  ASSERT_EQ(s.pop_ready(0, 10).size(), 1u);
  s.finish(2);  // cancelled while waiting
  s.finish(1);
  auto out = s.pop_ready(0, 10);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], 3);
}

TEST(Scheduler, AddingTwiceSchedulesOnce) {
  Scheduler s;
  s.add(1, Priority::normal, 0);
  s.add(1, Priority::normal, 0);
  EXPECT_EQ(s.pop_ready(0, 10).size(), 1u);
  EXPECT_TRUE(s.pop_ready(0, 10).empty());
}
