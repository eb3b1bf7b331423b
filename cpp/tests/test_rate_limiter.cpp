// The in-memory rate limiter: a second's burst, then the rate; the answer says when to come back.
#include <gtest/gtest.h>

#include "herald/rate_limiter.hpp"

using herald::LocalRateLimiter;

TEST(LocalRateLimiter, ABurstOfOneSecondThenTheRate) {
  LocalRateLimiter limiter;
  const std::int64_t t0 = 1'000'000;
  for (int i = 0; i < 10; ++i) ASSERT_EQ(limiter.take("sms", 10, t0), 0) << i;
  const std::int64_t again = limiter.take("sms", 10, t0);
  EXPECT_EQ(again, t0 + 100);  // one token every 100 ms at 10/s
  EXPECT_NE(limiter.take("sms", 10, t0 + 99), 0);
  EXPECT_EQ(limiter.take("sms", 10, t0 + 100), 0);
  EXPECT_NE(limiter.take("sms", 10, t0 + 100), 0);
}

TEST(LocalRateLimiter, KeysAreIndependentAndNoRateMeansNoLimit) {
  LocalRateLimiter limiter;
  EXPECT_EQ(limiter.take("a", 1, 0), 0);
  EXPECT_EQ(limiter.take("a", 1, 0), 1000);
  EXPECT_EQ(limiter.take("b", 1, 0), 0);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(limiter.take("c", 0, 0), 0);
}

TEST(LocalRateLimiter, ABelowOneRateStillAllowsOneAtATime) {
  LocalRateLimiter limiter;
  EXPECT_EQ(limiter.take("slow", 0.5, 0), 0);
  EXPECT_EQ(limiter.take("slow", 0.5, 0), 2000);
  EXPECT_EQ(limiter.take("slow", 0.5, 2000), 0);
}

TEST(LocalRateLimiter, TimeGoingBackDoesNotMintTokens) {
  LocalRateLimiter limiter;
  EXPECT_EQ(limiter.take("a", 1, 5000), 0);
  EXPECT_NE(limiter.take("a", 1, 1000), 0);
  EXPECT_NE(limiter.take("a", 1, 5000), 0);
}
