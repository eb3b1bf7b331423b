#pragma once
/// In-memory scheduling: four priority lanes, delayed items and FIFO ordering keys.
///
/// Pure logic with no clock and no threads: the engine owns one instance on its loop thread and
/// passes the time in, which is what makes it testable without sleeping.
#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "herald/notification.hpp"

namespace herald {

/// Lane weights for everything below critical. Critical is always served first; among the
/// others each round serves up to `weight` items per lane, so bulk never starves.
struct LaneWeights {
  int high = 8;
  int normal = 4;
  int bulk = 1;
};

class Scheduler {
 public:
  explicit Scheduler(LaneWeights weights = {}) : weights_(weights) {}

  /// Adds a notification. With an ordering key already held by an unfinished notification it
  /// waits behind it; otherwise it becomes ready at `ready_at_ms` (0 = now).
  void add(Id id, Priority priority, std::int64_t ready_at_ms, const std::string& ordering_key = {});
  /// Puts an item that was popped (and keeps its ordering key) back, ready at `at_ms`; moves a
  /// delayed item to `at_ms`.
  void defer(Id id, std::int64_t at_ms);
  /// Puts an item that was popped back at the head of its lane, ready now.
  void requeue_front(Id id);
  /// Up to `max` ready ids in service order: all due critical items first, then a weighted
  /// round over high, normal and bulk.
  std::vector<Id> pop_ready(std::int64_t now_ms, std::size_t max);
  /// The item reached a final state: forget it and release its ordering key to the next waiter.
  void finish(Id id);
  /// Earliest time a delayed item becomes due, if any.
  [[nodiscard]] std::optional<std::int64_t> next_due() const;

  [[nodiscard]] bool contains(Id id) const { return items_.count(id) != 0; }
  [[nodiscard]] std::size_t size() const { return items_.size(); }          ///< every unfinished item
  [[nodiscard]] std::size_t ready_count() const;                            ///< in lanes now
  [[nodiscard]] std::size_t lane_size(Priority p) const { return lanes_[static_cast<int>(p)].size(); }

 private:
  enum class Where : std::uint8_t { lane, delayed, waiting_key, out };
  struct Item {
    Priority priority;
    std::string ordering_key;
    std::int64_t ready_at_ms;
    Where where;
    std::uint64_t generation;  ///< bumps on every move, so stale heap entries are skipped
  };
  struct Due {
    std::int64_t at;
    Id id;
    std::uint64_t generation;
    bool operator>(const Due& o) const { return at != o.at ? at > o.at : id > o.id; }
  };

  void place(Id id, Item& item);  // into a lane or the delayed heap
  void promote_due(std::int64_t now_ms);
  bool take_from(std::size_t lane, std::vector<Id>& out);

  LaneWeights weights_;
  std::unordered_map<Id, Item> items_;
  std::array<std::deque<Id>, priority_count> lanes_;
  std::priority_queue<Due, std::vector<Due>, std::greater<>> delayed_;
  std::unordered_map<std::string, std::deque<Id>> key_waiters_;  ///< key -> ids waiting behind the holder
  std::unordered_map<std::string, Id> key_holder_;
  std::array<int, priority_count> credit_{};  ///< weighted round state for lanes 1..3
};

}  // namespace herald
