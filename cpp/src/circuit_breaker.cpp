#include "herald/circuit_breaker.hpp"

#include <algorithm>

namespace herald {

std::string_view to_string(CircuitState s) noexcept {
  switch (s) {
    case CircuitState::closed: return "closed";
    case CircuitState::open: return "open";
    case CircuitState::half_open: return "half_open";
  }
  return "closed";
}

CircuitBreaker::CircuitBreaker(CircuitConfig config)
    : config_(config), bucket_ms_(std::max<std::int64_t>(1, config.window_ms / bucket_count)) {}

void CircuitBreaker::clear_window() noexcept {
  for (auto& b : buckets_) b = Bucket{};
  run_ = 0;
}

CircuitTransition CircuitBreaker::open(std::int64_t now, std::string reason) {
  CircuitTransition t{state_, CircuitState::open, std::move(reason)};
  state_ = CircuitState::open;
  open_until_ = now + config_.cooldown_ms;
  probes_started_ = 0;
  return t;
}

std::optional<CircuitTransition> CircuitBreaker::tick(std::int64_t now) {
  if (state_ == CircuitState::open && now >= open_until_) {
    state_ = CircuitState::half_open;
    probing_since_ = now;
    probes_started_ = 0;
    return CircuitTransition{CircuitState::open, CircuitState::half_open,
                             "cool-down of " + std::to_string(config_.cooldown_ms) + " ms over: letting " +
                                 std::to_string(config_.probes) + (config_.probes == 1 ? " probe" : " probes") +
                                 " through"};
  }
  if (state_ == CircuitState::half_open && probes_started_ >= config_.probes &&
      now - probing_since_ >= config_.cooldown_ms) {
    probing_since_ = now;  // the probes never answered: let new ones through
    probes_started_ = 0;
  }
  return std::nullopt;
}

bool CircuitBreaker::allow(std::int64_t now) {
  switch (state_) {
    case CircuitState::closed: return true;
    case CircuitState::open: return false;
    case CircuitState::half_open:
      if (probes_started_ >= config_.probes) return false;
      if (probes_started_ == 0) probing_since_ = now;
      ++probes_started_;
      return true;
  }
  return false;
}

std::optional<CircuitTransition> CircuitBreaker::record(bool ok, std::int64_t now) {
  const std::int64_t epoch = now / bucket_ms_;
  Bucket& b = buckets_[static_cast<std::size_t>(epoch % bucket_count)];
  if (b.epoch != epoch) b = Bucket{epoch, 0, 0};
  ++b.attempts;
  if (!ok) ++b.failures;
  run_ = ok ? 0 : run_ + 1;
  switch (state_) {
    case CircuitState::open:
      return std::nullopt;  // an answer to a request started before it opened: counted, nothing more
    case CircuitState::half_open:
      if (ok) {
        state_ = CircuitState::closed;
        clear_window();  // the failures that opened it are history: a fresh window
        return CircuitTransition{CircuitState::half_open, CircuitState::closed, "probe succeeded"};
      }
      return open(now, "probe failed");
    case CircuitState::closed: break;
  }
  if (!ok && config_.consecutive_failures > 0 && run_ >= config_.consecutive_failures) {
    return open(now, std::to_string(run_) + " failures in a row");
  }
  if (!ok && config_.failure_rate > 0) {
    const int n = attempts(now);
    const int f = failures(now);
    if (n >= config_.min_attempts && static_cast<double>(f) >= config_.failure_rate * n) {
      return open(now, std::to_string(f) + " of " + std::to_string(n) + " attempts failed in the last " +
                           std::to_string(config_.window_ms) + " ms");
    }
  }
  return std::nullopt;
}

int CircuitBreaker::attempts(std::int64_t now) const noexcept {
  const std::int64_t oldest = now / bucket_ms_ - (bucket_count - 1);
  int n = 0;
  for (const auto& b : buckets_) {
    if (b.epoch >= oldest) n += b.attempts;
  }
  return n;
}

int CircuitBreaker::failures(std::int64_t now) const noexcept {
  const std::int64_t oldest = now / bucket_ms_ - (bucket_count - 1);
  int n = 0;
  for (const auto& b : buckets_) {
    if (b.epoch >= oldest) n += b.failures;
  }
  return n;
}

double CircuitBreaker::failure_rate(std::int64_t now) const noexcept {
  const int n = attempts(now);
  return n == 0 ? 0.0 : static_cast<double>(failures(now)) / n;
}

void RecentLatency::add(std::int64_t latency_us) noexcept {
  ring_[next_] = latency_us;
  next_ = (next_ + 1) % capacity;
  if (size_ < capacity) ++size_;
}

double RecentLatency::p99_ms() const {
  if (size_ == 0) return -1;
  std::array<std::int64_t, capacity> copy{};
  std::copy_n(ring_.begin(), size_, copy.begin());
  // The smallest value at or above 99% of the samples (nearest rank).
  const std::size_t rank = (size_ * 99 + 99) / 100 - 1;
  std::nth_element(copy.begin(), copy.begin() + static_cast<std::ptrdiff_t>(rank), copy.begin() + static_cast<std::ptrdiff_t>(size_));
  return static_cast<double>(copy[rank]) / 1000.0;
}

}  // namespace herald
