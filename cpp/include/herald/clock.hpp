#pragma once
/// Time: the Clock the engine reads (injected: a ManualClock in tests advances instead of
/// sleeping), wall-clock helpers, and the id generator.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "herald/notification.hpp"

namespace herald {

[[nodiscard]] inline std::int64_t now_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}
[[nodiscard]] inline std::int64_t now_us() noexcept {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

/// What the engine asks the time of. Timers armed on the engine's loop follow it (LoopTimer).
class Clock {
 public:
  virtual ~Clock() = default;
  /// Microseconds since the epoch.
  [[nodiscard]] virtual std::int64_t now_us() const = 0;
  [[nodiscard]] std::int64_t now_ms() const { return now_us() / 1000; }
  /// Whether time moves only when told to (then timers wait for advance(), not for real time).
  [[nodiscard]] virtual bool manual() const { return false; }
  /// A manual clock calls `f` after every move; the id removes it. A real clock never calls it.
  virtual std::uint64_t on_advance(std::function<void()> /*f*/) { return 0; }
  virtual void remove_listener(std::uint64_t /*id*/) {}
};

/// The system's wall clock (one shared instance).
[[nodiscard]] std::shared_ptr<Clock> system_clock();

/// Time that moves only when a test says so. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(std::int64_t start_us);
  [[nodiscard]] std::int64_t now_us() const override { return now_us_.load(std::memory_order_acquire); }
  [[nodiscard]] bool manual() const override { return true; }
  /// Moves time forward (never back) and wakes whoever waits on it.
  void advance(std::chrono::microseconds by);
  std::uint64_t on_advance(std::function<void()> f) override;
  void remove_listener(std::uint64_t id) override;

 private:
  std::atomic<std::int64_t> now_us_;
  std::mutex mutex_;  ///< held while listeners run, so a removed one is never called after
  std::map<std::uint64_t, std::function<void()>> listeners_;
  std::uint64_t next_id_ = 1;
};

/// Time-ordered unique ids: (milliseconds since epoch << 16) + counter, never below the last id
/// seen in the store, so ids stay unique and increasing across restarts. Thread-safe, lock-free.
class IdGenerator {
 public:
  explicit IdGenerator(Id floor = 0) : last_(floor) {}
  /// Never hand out an id at or below `floor` (the largest id already stored).
  void raise_floor(Id floor) noexcept {
    Id prev = last_.load(std::memory_order_relaxed);
    while (prev < floor && !last_.compare_exchange_weak(prev, floor, std::memory_order_relaxed)) {
    }
  }
  Id next() noexcept {
    const Id candidate = now_ms() << 16;
    Id prev = last_.load(std::memory_order_relaxed);
    Id next_id = 0;
    do {
      next_id = candidate > prev ? candidate : prev + 1;
    } while (!last_.compare_exchange_weak(prev, next_id, std::memory_order_relaxed));
    return next_id;
  }

 private:
  std::atomic<Id> last_;
};

}  // namespace herald
