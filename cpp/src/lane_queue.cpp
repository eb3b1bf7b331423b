#include "herald/lane_queue.hpp"

namespace herald {

bool LaneQueue::empty() const noexcept {
  for (const auto& lane : lanes_) {
    if (!lane.empty()) return false;
  }
  return true;
}

int LaneQueue::next_lane(bool* new_round) const noexcept {
  *new_round = false;
  if (!lanes_[0].empty()) return 0;
  for (int step = 0; step < priority_count - 1; ++step) {
    const int lane = 1 + (cursor_ - 1 + step) % (priority_count - 1);
    if (credit_[static_cast<std::size_t>(lane)] > 0 && !lanes_[static_cast<std::size_t>(lane)].empty()) return lane;
  }
  // The round is over (no lane with items has turns left): the next starts at the most urgent.
  for (int lane = 1; lane < priority_count; ++lane) {
    if (!lanes_[static_cast<std::size_t>(lane)].empty()) {
      *new_round = true;
      return lane;
    }
  }
  return -1;
}

Id LaneQueue::peek() const noexcept {
  bool new_round = false;
  const int lane = next_lane(&new_round);
  return lane < 0 ? 0 : lanes_[static_cast<std::size_t>(lane)].front();
}

Id LaneQueue::pop() {
  bool new_round = false;
  const int lane = next_lane(&new_round);
  if (lane < 0) return 0;
  auto& q = lanes_[static_cast<std::size_t>(lane)];
  const Id id = q.front();
  q.pop_front();
  if (lane == 0) return id;
  if (new_round) credit_ = weight_;
  --credit_[static_cast<std::size_t>(lane)];
  cursor_ = lane == priority_count - 1 ? 1 : lane + 1;
  return id;
}

}  // namespace herald
