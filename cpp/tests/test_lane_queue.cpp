// A provider's lane queue: critical first, the others in weighted turns, peek agrees with pop.
#include <gtest/gtest.h>

#include <map>

#include "herald/lane_queue.hpp"

using herald::Id;
using herald::LaneQueue;
using herald::Priority;

TEST(LaneQueue, CriticalFirstThenWeightedTurns) {
  LaneQueue q({8, 4, 1});
  Id next = 1;
  for (int i = 0; i < 100; ++i) q.push_back(Priority::normal, next++);   // 1..100
  for (int i = 0; i < 100; ++i) q.push_back(Priority::bulk, next++);     // 101..200
  q.push_back(Priority::critical, 1000);
  EXPECT_EQ(q.pop(), 1000);
  std::map<char, int> first_50;
  for (int i = 0; i < 50; ++i) {
    const Id peeked = q.peek();
    const Id id = q.pop();
    ASSERT_EQ(peeked, id);
    ++first_50[id <= 100 ? 'n' : 'b'];
  }
  EXPECT_EQ(first_50['n'], 40);  // 4:1
  EXPECT_EQ(first_50['b'], 10);
}

TEST(LaneQueue, FifoWithinALaneAndPushFront) {
  LaneQueue q;
  for (Id i = 1; i <= 5; ++i) q.push_back(Priority::high, i);
  EXPECT_EQ(q.pop(), 1);
  q.push_front(Priority::high, 1);
  std::vector<Id> out;
  while (!q.empty()) out.push_back(q.pop());
  EXPECT_EQ(out, (std::vector<Id>{1, 2, 3, 4, 5}));
  EXPECT_EQ(q.pop(), 0);
  EXPECT_EQ(q.peek(), 0);
}

TEST(LaneQueue, ALaneAloneIsServedWithoutWaitingForTurns) {
  LaneQueue q({8, 4, 1});
  for (Id i = 1; i <= 20; ++i) q.push_back(Priority::bulk, i);
  for (Id i = 1; i <= 20; ++i) ASSERT_EQ(q.pop(), i);
  EXPECT_EQ(q.size(Priority::bulk), 0u);
}
