#pragma once
/// A provider's queue of routed notifications, by lane: critical always first; high, normal and
/// bulk in weighted turns (LaneWeights, as the scheduler), so bulk keeps moving at the provider
/// too when more urgent work keeps arriving. Pure: no clock, no threads.
#include <array>
#include <cstddef>
#include <deque>

#include "herald/notification.hpp"
#include "herald/scheduler.hpp"

namespace herald {

class LaneQueue {
 public:
  explicit LaneQueue(LaneWeights weights = {}) : weight_{0, weights.high, weights.normal, weights.bulk} {}

  void push_back(Priority lane, Id id) { lanes_[index(lane)].push_back(id); }
  /// Back to the front of its lane (it was taken and could not go).
  void push_front(Priority lane, Id id) { lanes_[index(lane)].push_front(id); }
  [[nodiscard]] bool empty() const noexcept;
  [[nodiscard]] std::size_t size(Priority lane) const noexcept { return lanes_[index(lane)].size(); }
  /// What pop() would take; 0 when empty.
  [[nodiscard]] Id peek() const noexcept;
  /// Takes the next id (critical first, then the lanes' weighted turns); 0 when empty.
  Id pop();

 private:
  static std::size_t index(Priority p) noexcept { return static_cast<std::size_t>(p); }
  /// The lane the next pop takes from, and whether that starts a new round of turns; -1 when empty.
  [[nodiscard]] int next_lane(bool* new_round) const noexcept;

  std::array<std::deque<Id>, priority_count> lanes_;
  std::array<int, priority_count> weight_;
  std::array<int, priority_count> credit_{};  ///< turns left in this round, per lane
  int cursor_ = 1;  ///< the lane whose turn is next within the round
};

}  // namespace herald
