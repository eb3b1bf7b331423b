#pragma once
/// Retry timing: exponential backoff with jitter, honouring a provider's Retry-After.
#include <algorithm>
#include <cstdint>
#include <random>

namespace herald {

struct RetryPolicy {
  int max_attempts_per_provider = 3;  ///< attempts on one provider before failing over
  std::int64_t base_ms = 200;         ///< first retry waits about this long
  std::int64_t max_ms = 60'000;       ///< cap on one wait
  std::int64_t max_retry_after_ms = 3'600'000;  ///< a Retry-After beyond this is clamped
};

/// Delay before retry number `retry` (1 = first retry). "Equal jitter": half the exponential step
/// plus a uniform share of the other half, so retries spread out yet never collapse to zero.
/// A provider's Retry-After (ms, < 0 when absent) is a floor.
template <class Rng>
[[nodiscard]] std::int64_t backoff_ms(const RetryPolicy& p, int retry, std::int64_t retry_after_ms, Rng& rng) {
  const int shift = std::clamp(retry - 1, 0, 30);
  const std::int64_t step = std::min(p.max_ms, p.base_ms << shift);
  std::uniform_int_distribution<std::int64_t> jitter(0, std::max<std::int64_t>(0, step / 2));
  std::int64_t delay = step / 2 + jitter(rng);
  if (retry_after_ms >= 0) delay = std::max(delay, std::min(retry_after_ms, p.max_retry_after_ms));
  return delay;
}

}  // namespace herald
