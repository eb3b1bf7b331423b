// The call gate: close waits for the calls inside and refuses new ones. And the clock a test moves.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include <boost/asio/io_context.hpp>

#include "herald/call_gate.hpp"
#include "herald/clock.hpp"
#include "herald/event.hpp"
#include "herald/loop_timer.hpp"

using namespace herald;

TEST(CallGate, CloseWaitsForTheCallInsideAndRefusesNewOnes) {
  CallGate gate;
  std::promise<void> inside, release;
  auto release_future = release.get_future().share();
  std::thread caller([&] {
    auto pass = gate.enter();
    inside.set_value();
    release_future.wait();
  });
  inside.get_future().wait();
  EXPECT_EQ(gate.inside(), 1u);
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    gate.close_and_wait();
    closed = true;
  });
  // The closer cannot finish while the call is inside; new calls are refused meanwhile.
  while (!gate.closed()) std::this_thread::yield();
  EXPECT_THROW((void)gate.enter(), EngineClosed);
  EXPECT_FALSE(closed.load());
  release.set_value();
  caller.join();
  closer.join();
  EXPECT_TRUE(closed.load());
  EXPECT_EQ(gate.inside(), 0u);
  gate.close_and_wait();  // idempotent
}

TEST(CallGate, ManyCallersNeverSeeATornDownObject) {
  for (int round = 0; round < 20; ++round) {
    CallGate gate;
    std::atomic<int> alive{1};  // "the object": 1 until close has drained the gate
    std::atomic<int> bad{0}, served{0};
    std::vector<std::thread> callers;
    for (int t = 0; t < 4; ++t) {
      callers.emplace_back([&] {
        for (;;) {
          try {
            auto pass = gate.enter();
            if (alive.load() != 1) ++bad;
            ++served;
          } catch (const EngineClosed&) {
            return;
          }
        }
      });
    }
    while (served.load() < 100) std::this_thread::yield();
    gate.close_and_wait();
    alive = 0;
    for (auto& c : callers) c.join();
    EXPECT_EQ(bad.load(), 0);
  }
}

TEST(ManualClock, TimersFireWhenTheClockIsAdvancedPastThem) {
  auto clock = std::make_shared<ManualClock>(1'000'000'000);  // 1,000,000 ms
  boost::asio::io_context io;
  int fired = 0;
  LoopTimer timer(io, clock, [&] { ++fired; });
  timer.arm_at(1'000'500);
  io.poll();
  io.restart();
  EXPECT_EQ(fired, 0);
  clock->advance(std::chrono::milliseconds(499));
  io.poll();
  io.restart();
  EXPECT_EQ(fired, 0);
  EXPECT_EQ(timer.due_ms(), 1'000'500);
  clock->advance(std::chrono::milliseconds(1));
  io.poll();
  io.restart();
  EXPECT_EQ(fired, 1);
  EXPECT_EQ(timer.due_ms(), 0);
  // Armed in the past: fires from the loop at once, as a real timer would.
  timer.arm_at(10);
  io.poll();
  EXPECT_EQ(fired, 2);
}

TEST(ManualClock, AnEarlierArmWinsAndCancelDisarms) {
  auto clock = std::make_shared<ManualClock>(0);
  boost::asio::io_context io;
  int fired = 0;
  LoopTimer timer(io, clock, [&] { ++fired; });
  timer.arm_at(100);
  timer.arm_at(50);
  timer.arm_at(70);  // later than the armed time: ignored
  EXPECT_EQ(timer.due_ms(), 50);
  timer.cancel();
  clock->advance(std::chrono::milliseconds(200));
  io.poll();
  EXPECT_EQ(fired, 0);
}

TEST(EventKind, EveryNameRoundTrips) {
  for (int i = 1; i < event_kind_count; ++i) {
    const auto kind = static_cast<EventKind>(i);
    EXPECT_NE(to_string(kind), "unknown");
    EXPECT_EQ(parse_event_kind(to_string(kind)), kind) << to_string(kind);
  }
  EXPECT_EQ(parse_event_kind("no_such_kind"), EventKind::unknown);
  EXPECT_EQ(to_string(EventKind::attempt_failed), "attempt_failed");
}
