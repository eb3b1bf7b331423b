// The inbox that carries the providers' answers to the loop: tasks wait until a wake, one post
// runs them all in order, and a task that throws leaves the others to the next drain.
#include "../src/answer_inbox.hpp"

#include <stdexcept>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

namespace {

using herald::AnswerInbox;

TEST(AnswerInbox, TasksWaitForAWakeAndRunInOrderInOnePost) {
  boost::asio::io_context loop;
  AnswerInbox inbox(loop);
  std::vector<int> ran;
  for (int i = 1; i <= 3; ++i) inbox.put([&ran, i] { ran.push_back(i); });
  EXPECT_EQ(inbox.waiting(), 3U);
  EXPECT_EQ(loop.poll(), 0U);  // nothing was posted: put() alone never wakes the loop
  EXPECT_TRUE(ran.empty());
  inbox.wake();
  inbox.wake();  // a drain is already queued: no second post
  loop.restart();
  EXPECT_EQ(loop.poll(), 1U);
  EXPECT_EQ(ran, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(inbox.waiting(), 0U);
  inbox.wake();  // nothing waits: nothing is posted
  loop.restart();
  EXPECT_EQ(loop.poll(), 0U);
}

TEST(AnswerInbox, ATaskPutWhileDrainingWaitsForTheNextWake) {
  boost::asio::io_context loop;
  AnswerInbox inbox(loop);
  std::vector<int> ran;
  inbox.put([&] {
    ran.push_back(1);
    inbox.put([&] { ran.push_back(2); });
  });
  inbox.wake();
  EXPECT_EQ(loop.poll(), 1U);
  EXPECT_EQ(ran, (std::vector<int>{1}));
  EXPECT_EQ(inbox.waiting(), 1U);
  inbox.wake();  // the drain that ran has ended: this one posts again
  loop.restart();
  EXPECT_EQ(loop.poll(), 1U);
  EXPECT_EQ(ran, (std::vector<int>{1, 2}));
}

TEST(AnswerInbox, ATaskThatThrowsLeavesTheRestForTheNextDrainInOrder) {
  boost::asio::io_context loop;
  AnswerInbox inbox(loop);
  std::vector<int> ran;
  inbox.put([&] { ran.push_back(1); });
  inbox.put([] { throw std::runtime_error("task failed"); });
  inbox.put([&] { ran.push_back(3); });
  inbox.put([&] { ran.push_back(4); });
  inbox.wake();
  EXPECT_THROW(loop.poll(), std::runtime_error);
  EXPECT_EQ(ran, (std::vector<int>{1}));
  EXPECT_EQ(inbox.waiting(), 2U);
  inbox.put([&] { ran.push_back(5); });  // put after the failure: runs after those left over
  loop.restart();
  EXPECT_EQ(loop.poll(), 1U);  // the drain the failed one posted again
  EXPECT_EQ(ran, (std::vector<int>{1, 3, 4, 5}));
}

}  // namespace
