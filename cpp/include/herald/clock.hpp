#pragma once
/// Wall-clock helpers and the id generator.
#include <atomic>
#include <chrono>
#include <cstdint>

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
