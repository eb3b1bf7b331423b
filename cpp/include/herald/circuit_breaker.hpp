#pragma once
/// A circuit breaker per provider, and the view of a provider's health that rules read.
///
/// Sans I/O, like the DeliveryMachine: attempt outcomes come in with their time, allow(now) says
/// whether an attempt may start, and every change of state comes back as a CircuitTransition for
/// the shell (the engine's loop) to record. No clock, thread or socket inside, so every
/// transition is tested by calling it (cpp/tests/test_circuit_breaker.cpp).
///
///   closed ──(failure rate over the window, or a run of failures)──▶ open
///   open ──(cool-down over: tick())──▶ half_open   (lets `probes` attempts through)
///   half_open ──(a probe succeeds)──▶ closed;  half_open ──(a probe fails)──▶ open
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald {

enum class CircuitState : std::uint8_t { closed, open, half_open };
[[nodiscard]] std::string_view to_string(CircuitState s) noexcept;

/// When a provider's circuit opens and how it comes back. Per provider (ProviderConfig).
struct CircuitConfig {
  double failure_rate = 0.5;          ///< opens at this share of failed attempts or more; 0 = rule off
  int min_attempts = 20;              ///< ...once the window holds at least this many attempts
  std::int64_t window_ms = 30'000;    ///< the rolling window the rate is taken over
  int consecutive_failures = 5;       ///< opens after this many failures in a row; 0 = rule off
  std::int64_t cooldown_ms = 10'000;  ///< open this long before it lets a probe through
  int probes = 1;                     ///< attempts let through while half-open
};

/// A change of state, for the delivery log and the metrics.
struct CircuitTransition {
  CircuitState from = CircuitState::closed;
  CircuitState to = CircuitState::closed;
  std::string reason;
};

class CircuitBreaker {
 public:
  static constexpr int bucket_count = 10;  ///< the window is kept as this many slices of time

  explicit CircuitBreaker(CircuitConfig config = {});

  /// Time-driven moves: open → half_open once the cool-down is over. While half-open, probes that
  /// never answered (their request was never sent) are given up after another cool-down so that
  /// the circuit cannot stay half-open for good.
  std::optional<CircuitTransition> tick(std::int64_t now_ms);
  /// Whether an attempt may start now. Half-open: true for `probes` attempts, counted here.
  /// Call tick() first: an open circuit stays closed to traffic until tick() moves it.
  bool allow(std::int64_t now_ms);
  /// The outcome of an attempt: ok = the provider worked (an acceptance, or an answer about the
  /// recipient); a failure = no answer, a timeout, a 5xx, a 429 or another provider error.
  std::optional<CircuitTransition> record(bool ok, std::int64_t now_ms);

  [[nodiscard]] CircuitState state() const noexcept { return state_; }
  /// When an open circuit goes half-open (tick() at or after it); 0 when not open.
  [[nodiscard]] std::int64_t half_open_at() const noexcept { return state_ == CircuitState::open ? open_until_ : 0; }
  /// Attempts and failures in the window ending at now.
  [[nodiscard]] int attempts(std::int64_t now_ms) const noexcept;
  [[nodiscard]] int failures(std::int64_t now_ms) const noexcept;
  /// failures / attempts over the window; 0 with no attempts.
  [[nodiscard]] double failure_rate(std::int64_t now_ms) const noexcept;
  [[nodiscard]] const CircuitConfig& config() const noexcept { return config_; }

 private:
  struct Bucket {
    std::int64_t epoch = -1;  ///< which slice of time it counts (now / bucket_ms); -1 = empty
    int attempts = 0;
    int failures = 0;
  };
  CircuitTransition open(std::int64_t now_ms, std::string reason);
  void clear_window() noexcept;

  CircuitConfig config_;
  std::int64_t bucket_ms_;
  std::array<Bucket, bucket_count> buckets_{};
  CircuitState state_ = CircuitState::closed;
  int run_ = 0;                   ///< failures in a row
  std::int64_t open_until_ = 0;   ///< open: when the cool-down ends
  std::int64_t probing_since_ = 0;
  int probes_started_ = 0;
};

/// The latest round trips of a provider, for its p99. A ring: O(1) to add, sorted only when read.
class RecentLatency {
 public:
  static constexpr std::size_t capacity = 256;
  void add(std::int64_t latency_us) noexcept;
  /// The 99th percentile in milliseconds of the latest round trips; -1 with none.
  [[nodiscard]] double p99_ms() const;

 private:
  std::array<std::int64_t, capacity> ring_{};
  std::size_t next_ = 0;
  std::size_t size_ = 0;
};

/// A provider's health as rules and Engine::provider_health() see it.
struct ProviderHealth {
  std::string name;
  CircuitState circuit = CircuitState::closed;
  double failure_rate = 0;  ///< over the circuit's window
  int attempts = 0;         ///< in the circuit's window
  double p99_ms = -1;       ///< of the latest round trips; -1 before any
  double cost = 0;          ///< the provider's cost per message
  std::int64_t half_open_at_ms = 0;  ///< open: when it lets a probe through
};

/// Where a router reads providers' health during a routing call (the engine's loop state: valid
/// only during that call, on the loop thread).
class ProviderHealthSource {
 public:
  virtual ~ProviderHealthSource() = default;
  [[nodiscard]] virtual std::optional<ProviderHealth> health(std::string_view name) const = 0;
  [[nodiscard]] virtual std::vector<std::string> names() const = 0;
};

}  // namespace herald
