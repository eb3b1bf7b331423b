#include "herald/idempotency_index.hpp"

namespace herald {

void IdempotencyIndex::rotate_if_due(std::int64_t now_ms, Map& dropped) {
  if (now_ms - rotated_ms_ < 60'000) return;
  dropped.swap(previous_);
  previous_.swap(current_);
  rotated_ms_ = now_ms;
}

const IdempotencyEntry* IdempotencyIndex::find(const IdempotencyKey& key) {
  if (auto it = current_.find(key); it != current_.end()) return &it->second;
  if (auto old = previous_.find(key); old != previous_.end()) return &current_.emplace(key, old->second).first->second;
  return nullptr;
}

const IdempotencyEntry& IdempotencyIndex::remember(const IdempotencyKey& key, IdempotencyEntry entry) {
  return current_.insert_or_assign(key, entry).first->second;
}

void IdempotencyIndex::forget(const IdempotencyKey& key) {
  current_.erase(key);
  previous_.erase(key);
}

}  // namespace herald
