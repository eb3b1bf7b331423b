#pragma once
/// The intake's index of recent idempotency keys: a repeat is answered without a store read.
/// Two generations of about a minute each (the older dropped whole when the newer is a minute
/// old, so trimming never walks the map); older keys are found in the store, which is read only
/// when a filter of every stored key (KeyFilter) says the key may be there.
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "herald/key_filter.hpp"
#include "herald/notification.hpp"

namespace herald {

struct IdempotencyKey {
  std::string tenant, type, recipient_id, key;
  /// Of the four texts, found once: a key is looked up several times per notification taken in.
  std::size_t hash = 0;

  IdempotencyKey() = default;
  IdempotencyKey(std::string tenant_, std::string type_, std::string recipient_id_, std::string key_)
      : tenant(std::move(tenant_)), type(std::move(type_)), recipient_id(std::move(recipient_id_)), key(std::move(key_)) {
    const std::hash<std::string> h;
    hash = h(tenant) ^ (h(type) * 3) ^ (h(recipient_id) * 7) ^ (h(key) * 13);
  }
  bool operator==(const IdempotencyKey&) const = default;
  /// The key of notification `n` (which has an idempotency key).
  [[nodiscard]] static IdempotencyKey of(const Notification& n) {
    return IdempotencyKey(n.tenant, n.type, n.recipient_id, n.idempotency_key);
  }
};
struct IdempotencyKeyHash {
  std::size_t operator()(const IdempotencyKey& k) const noexcept { return k.hash; }
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

  /// Whether `key` may be in the store: false means certainly not (no store read needed).
  [[nodiscard]] bool may_be_stored(const IdempotencyKey& key) const noexcept {
    return stored_.may_contain(filter_hash(key));
  }
  /// Notes a key that is (or is about to be) in the store.
  void note_stored(const IdempotencyKey& key) { stored_.add(filter_hash(key)); }
  void note_stored(std::string_view tenant, std::string_view type, std::string_view recipient_id, std::string_view key) {
    stored_.add(KeyFilter::hash(tenant, type, recipient_id, key));
  }

 private:
  static std::uint64_t filter_hash(const IdempotencyKey& k) noexcept {
    return KeyFilter::hash(k.tenant, k.type, k.recipient_id, k.key);
  }

  std::mutex mutex_;
  Map current_, previous_;
  KeyFilter stored_;
  std::int64_t rotated_ms_;
};

}  // namespace herald
