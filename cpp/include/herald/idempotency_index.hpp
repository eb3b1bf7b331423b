#pragma once
/// The intake's index of recent idempotency keys: a repeat is answered without a store read.
/// Two generations of about a minute each (the older dropped whole when the newer is a minute
/// old, so trimming never walks the map); older keys are found in the store.
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "herald/notification.hpp"

namespace herald {

struct IdempotencyKey {
  std::string tenant, type, recipient_id, key;
  bool operator==(const IdempotencyKey&) const = default;
  /// The key of notification `n` (which has an idempotency key).
  [[nodiscard]] static IdempotencyKey of(const Notification& n) {
    return IdempotencyKey{n.tenant, n.type, n.recipient_id, n.idempotency_key};
  }
};
struct IdempotencyKeyHash {
  std::size_t operator()(const IdempotencyKey& k) const noexcept {
    std::hash<std::string> h;
    return h(k.tenant) ^ (h(k.type) * 3) ^ (h(k.recipient_id) * 7) ^ (h(k.key) * 13);
  }
};

/// The notification a key was first used for, and a hash of what it asked.
struct IdempotencyEntry {
  Id id = 0;
  std::uint64_t hash = 0;
};

/// Not thread-safe by itself: callers hold mutex() around a check-then-reserve sequence.
class IdempotencyIndex {
 public:
  using Map = std::unordered_map<IdempotencyKey, IdempotencyEntry, IdempotencyKeyHash>;

  explicit IdempotencyIndex(std::int64_t now_ms = 0) : rotated_ms_(now_ms) {}

  [[nodiscard]] std::mutex& mutex() noexcept { return mutex_; }
  /// Starts a new generation when the current one is a minute old; the dropped one is handed to
  /// `dropped`, to be freed after the lock is released.
  void rotate_if_due(std::int64_t now_ms, Map& dropped);
  /// The entry of `key` in either generation (an old one is carried into the current), else null.
  [[nodiscard]] const IdempotencyEntry* find(const IdempotencyKey& key);
  /// Remembers a key (a new notification, or one found in the store).
  const IdempotencyEntry& remember(const IdempotencyKey& key, IdempotencyEntry entry);
  /// Forgets keys whose notifications were not accepted after all.
  void forget(const IdempotencyKey& key);

 private:
  std::mutex mutex_;
  Map current_, previous_;
  std::int64_t rotated_ms_;
};

}  // namespace herald
