#include <gtest/gtest.h>

#include <random>
#include <set>

#include "herald/backoff.hpp"

using herald::backoff_ms;
using herald::RetryPolicy;

TEST(Backoff, GrowsExponentiallyWithinJitterBounds) {
  RetryPolicy p;
  p.base_ms = 100;
  p.max_ms = 10'000;
  std::mt19937_64 rng(7);
  for (int retry = 1; retry <= 6; ++retry) {
    const std::int64_t step = std::min<std::int64_t>(p.max_ms, p.base_ms << (retry - 1));
    for (int i = 0; i < 200; ++i) {
      const auto d = backoff_ms(p, retry, -1, rng);
      EXPECT_GE(d, step / 2) << "retry " << retry;
      EXPECT_LE(d, step) << "retry " << retry;
    }
  }
}

TEST(Backoff, IsCapped) {
  RetryPolicy p;
  p.base_ms = 1000;
  p.max_ms = 5000;
  std::mt19937_64 rng(1);
  for (int i = 0; i < 100; ++i) EXPECT_LE(backoff_ms(p, 40, -1, rng), 5000);
}

TEST(Backoff, JitterSpreadsRetries) {
  RetryPolicy p;
  std::mt19937_64 rng(3);
  std::set<std::int64_t> seen;
  for (int i = 0; i < 50; ++i) seen.insert(backoff_ms(p, 3, -1, rng));
  EXPECT_GT(seen.size(), 10u);
}

TEST(Backoff, RetryAfterIsAFloor) {
  RetryPolicy p;
  p.base_ms = 100;
  std::mt19937_64 rng(5);
  EXPECT_GE(backoff_ms(p, 1, 7000, rng), 7000);
  // A short Retry-After does not shorten the backoff.
  EXPECT_GE(backoff_ms(p, 4, 1, rng), 400);
}

TEST(Backoff, HugeRetryAfterIsClamped) {
  RetryPolicy p;
  p.max_retry_after_ms = 60'000;
  std::mt19937_64 rng(5);
  EXPECT_EQ(backoff_ms(p, 1, 86'400'000, rng), 60'000);
}
