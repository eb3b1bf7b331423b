#include "herald/rate_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace herald {

std::int64_t LocalRateLimiter::take(const std::string& key, double rate_per_s, std::int64_t now_ms) {
  if (rate_per_s <= 0) return 0;  // no limit
  const double burst = std::max(1.0, rate_per_s);  // one second's worth
  Bucket& b = buckets_[key];
  if (!b.started) {
    b.tokens = burst;
    b.at_ms = now_ms;
    b.started = true;
  }
  const auto elapsed = static_cast<double>(std::max<std::int64_t>(0, now_ms - b.at_ms));
  b.tokens = std::min(burst, b.tokens + elapsed * rate_per_s / 1000.0);
  b.at_ms = std::max(b.at_ms, now_ms);
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return 0;
  }
  return now_ms + std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil((1.0 - b.tokens) * 1000.0 / rate_per_s)));
}

}  // namespace herald
