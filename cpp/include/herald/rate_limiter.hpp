#pragma once
/// Counters shared by everyone who sends through a provider: the seam where rate limits (and
/// next, circuit state) live. Today's implementation counts in this process's memory; a Redis
/// implementation (one Lua script per take) will make one limit hold across every process and
/// machine that sends through the same account. The engine asks by key (the provider's name).
#include <cstdint>
#include <string>
#include <unordered_map>

namespace herald {

class RateLimiter {
 public:
  virtual ~RateLimiter() = default;
  /// Takes one send from `key`'s budget of `rate_per_s` (a second's worth may be spent at once).
  /// Returns 0 when taken; otherwise the time (ms, the caller's clock) at which one will be free.
  [[nodiscard]] virtual std::int64_t take(const std::string& key, double rate_per_s, std::int64_t now_ms) = 0;
};

/// Token buckets in memory, one per key. Not thread-safe: the engine's loop owns it.
class LocalRateLimiter final : public RateLimiter {
 public:
  [[nodiscard]] std::int64_t take(const std::string& key, double rate_per_s, std::int64_t now_ms) override;

 private:
  struct Bucket {
    double tokens = 0;
    std::int64_t at_ms = 0;
    bool started = false;
  };
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace herald
