#pragma once
/// What the engine counts for `GET /metrics`, and the Prometheus text format it is read in.
///
/// One owner: the engine loop records and renders (render() runs on the loop too), so nothing here
/// locks. Recording a final state, an attempt or a latency is a hash lookup by a string the caller
/// already holds (no allocation after a label value's first use) and a few additions.
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "herald/clock.hpp"
#include "herald/engine_stats.hpp"
#include "herald/notification.hpp"
#include "herald/provider.hpp"

namespace herald {

/// A latency histogram with fixed buckets (seconds), as Prometheus reads it.
class Histogram {
 public:
  /// Upper bounds in seconds, ascending; +Inf is implied.
  explicit Histogram(const std::vector<double>* bounds) : bounds_(bounds), counts_(bounds->size() + 1, 0) {}
  void observe(std::chrono::microseconds latency) noexcept;
  /// Appends `name_bucket{labels,le=...}`, `name_sum{labels}` and `name_count{labels}` lines.
  void render(std::string& out, std::string_view name, std::string_view labels) const;
  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }

 private:
  const std::vector<double>* bounds_;
  std::vector<std::uint64_t> counts_;  ///< per bucket, not cumulative; the last one is +Inf
  std::uint64_t count_ = 0;
  std::int64_t sum_us_ = 0;
};

/// Gauges read from the engine when rendering (they are states, not counts of events).
struct MetricsGauges {
  std::array<std::uint64_t, priority_count> ready{};    ///< due, waiting in the lane for the loop
  std::array<std::uint64_t, priority_count> waiting{};  ///< routed, waiting for a provider slot
  std::uint64_t scheduled = 0;  ///< waiting for a later time (send_at, a retry's backoff)
  std::vector<std::pair<std::string, std::uint64_t>> provider_in_flight;  ///< requests in flight per provider
  std::vector<std::pair<std::string, CircuitState>> provider_circuit;     ///< each provider's circuit
  bool store_degraded = false;
  std::uint64_t store_held_batches = 0;
  bool closing = false;
};

/// Provider answers in one minute: accepted, and every other outcome (refused, failed, timed out).
struct MinuteCounts {
  std::uint64_t accepted = 0;
  std::uint64_t failed = 0;
};

/// Attempts per minute over the last hour, oldest minute first (`GET /v1/dashboard`'s rates).
struct LastHour {
  static constexpr std::size_t minutes = 60;
  using Series = std::array<MinuteCounts, minutes>;
  std::int64_t start_ms = 0;  ///< where the oldest minute begins (a whole minute of the clock)
  Series total{};             ///< every provider together
  std::vector<std::pair<std::string, Series>> providers;  ///< by name
};

/// Counts per minute for the last hour in 60 slots reused as the minutes go by: recording is an
/// index and two compares, and nothing is ever pruned (a slot of an older minute reads as 0).
class MinuteRing {
 public:
  /// One answer in `minute` (minutes since the epoch). An answer older than the hour the ring
  /// holds (a clock set back) is dropped rather than overwrite a newer minute.
  void add(std::int64_t minute, bool accepted) noexcept;
  /// The `LastHour::minutes` minutes ending with `current`, oldest first.
  [[nodiscard]] LastHour::Series window(std::int64_t current) const noexcept;

 private:
  struct Slot {
    std::int64_t minute = -1;
    MinuteCounts counts;
  };
  std::array<Slot, LastHour::minutes> slots_{};
};

class Metrics {
 public:
  /// `clock` times the per-minute counts of attempts (last_hour); none: the system's clock.
  explicit Metrics(std::shared_ptr<const Clock> clock = nullptr);
  /// A notification reached a final state.
  void final_state(const std::string& type, Priority priority, State state);
  /// One provider answer about one notification's attempt, on `channel` (the plan's); an
  /// accepted one adds `cost` to the provider's spend.
  void attempt(const std::string& provider, OutcomeKind outcome, const std::string& channel = {}, double cost = 0);
  /// One HTTP request to a provider and how long it took (a batch request counts once).
  void request(const std::string& provider, std::chrono::microseconds latency);
  /// From acceptance by send() to acceptance by a provider.
  void accepted(Priority priority, std::chrono::microseconds since_enqueue);
  /// An address was added to the suppression list.
  void suppression(const std::string& channel, const std::string& reason);
  /// An alert rule's state (herald_alert_firing): declared at 0, then 1 while it fires.
  void alert(const std::string& name, bool firing);
  /// Attempts per minute, in total and by provider, for the hour up to `now_ms` (the clock's).
  [[nodiscard]] LastHour last_hour(std::int64_t now_ms) const;

  /// Everything in the Prometheus text exposition format (version 0.0.4): what is recorded here,
  /// the engine's counters and the gauges.
  [[nodiscard]] std::string render(const EngineStats& counters, const MetricsGauges& gauges) const;

 private:
  struct ByType {
    std::array<std::array<std::uint64_t, 9>, priority_count> final{};  ///< [priority][state]
  };
  struct ByProvider {
    explicit ByProvider(const std::vector<double>* bounds) : latency(bounds) {}
    std::array<std::uint64_t, 5> outcomes{};  ///< by OutcomeKind
    Histogram latency;
    MinuteRing recent;  ///< attempts per minute, last hour
  };
  ByProvider& provider(const std::string& name);

  std::shared_ptr<const Clock> clock_;
  MinuteRing recent_;  ///< attempts per minute, every provider
  std::vector<double> request_bounds_;
  std::vector<double> accept_bounds_;
  std::unordered_map<std::string, ByType> types_;
  std::unordered_map<std::string, ByProvider> providers_;
  std::vector<Histogram> accept_latency_;  ///< by priority
  std::unordered_map<std::string, std::uint64_t> suppressions_;  ///< "channel\nreason"
  std::unordered_map<std::string, std::array<std::uint64_t, 5>> channels_;  ///< attempts by channel, by OutcomeKind
  std::unordered_map<std::string, double> spend_;                          ///< cost of accepted attempts by provider
  std::unordered_map<std::string, bool> alerts_;                           ///< alert name → firing
};

/// `value` escaped for a label value in the text format (backslash, double quote, newline).
[[nodiscard]] std::string prometheus_label(std::string_view value);

}  // namespace herald
