#include "herald/scheduler.hpp"

namespace herald {

void Scheduler::add(Id id, Priority priority, std::int64_t ready_at_ms, const std::string& ordering_key) {
  auto [it, inserted] = items_.try_emplace(id, Item{priority, ordering_key, ready_at_ms, Where::out, 0});
  if (!inserted) return;  // already scheduled: adding twice must not send twice
  Item& item = it->second;
  if (!ordering_key.empty()) {
    auto [holder, free] = key_holder_.try_emplace(ordering_key, id);
    if (!free && holder->second != id) {
      item.where = Where::waiting_key;
      key_waiters_[ordering_key].push_back(id);
      return;
    }
  }
  place(id, item);
}

void Scheduler::place(Id id, Item& item) {
  ++item.generation;
  if (item.ready_at_ms > 0) {
    item.where = Where::delayed;
    delayed_.push(Due{item.ready_at_ms, id, item.generation});
  } else {
    item.where = Where::lane;
    lanes_[static_cast<int>(item.priority)].push_back(id);
  }
}

void Scheduler::defer(Id id, std::int64_t at_ms) {
  auto it = items_.find(id);
  if (it == items_.end() || (it->second.where != Where::out && it->second.where != Where::delayed)) return;
  it->second.ready_at_ms = at_ms;
  place(id, it->second);
}

void Scheduler::requeue_front(Id id) {
  auto it = items_.find(id);
  if (it == items_.end() || it->second.where != Where::out) return;
  ++it->second.generation;
  it->second.where = Where::lane;
  lanes_[static_cast<int>(it->second.priority)].push_front(id);
}

void Scheduler::promote_due(std::int64_t now_ms) {
  while (!delayed_.empty() && delayed_.top().at <= now_ms) {
    const Due due = delayed_.top();
    delayed_.pop();
    auto it = items_.find(due.id);
    if (it == items_.end() || it->second.generation != due.generation || it->second.where != Where::delayed) {
      continue;  // finished or moved since
    }
    it->second.where = Where::lane;
    lanes_[static_cast<int>(it->second.priority)].push_back(due.id);
  }
}

bool Scheduler::take_from(std::size_t lane, std::vector<Id>& out) {
  auto& q = lanes_[lane];
  while (!q.empty()) {
    const Id id = q.front();
    q.pop_front();
    auto it = items_.find(id);
    if (it == items_.end() || it->second.where != Where::lane) continue;  // finished while queued
    it->second.where = Where::out;
    out.push_back(id);
    return true;
  }
  return false;
}

std::vector<Id> Scheduler::pop_ready(std::int64_t now_ms, std::size_t max) {
  promote_due(now_ms);
  std::vector<Id> out;
  out.reserve(std::min<std::size_t>(max, 256));
  while (out.size() < max && take_from(0, out)) {
  }
  const std::array<int, priority_count> weight = {0, weights_.high, weights_.normal, weights_.bulk};
  while (out.size() < max) {
    bool any = false;
    for (std::size_t lane = 1; lane < lanes_.size() && out.size() < max; ++lane) {
      if (credit_[lane] <= 0) continue;
      if (take_from(lane, out)) {
        --credit_[lane];
        any = true;
      } else {
        credit_[lane] = 0;  // an empty lane gives up the rest of its turn
      }
    }
    if (!any) {
      // Round over: refill credits. Stop when every lane is empty.
      bool pending = false;
      for (std::size_t lane = 1; lane < lanes_.size(); ++lane) {
        credit_[lane] = weight[lane];
        pending = pending || !lanes_[lane].empty();
      }
      if (!pending) break;
    }
  }
  return out;
}

void Scheduler::finish(Id id) {
  auto it = items_.find(id);
  if (it == items_.end()) return;
  const std::string key = std::move(it->second.ordering_key);
  items_.erase(it);  // lane/heap entries for it are skipped lazily
  if (key.empty()) return;
  auto holder = key_holder_.find(key);
  if (holder == key_holder_.end() || holder->second != id) {
    // It was waiting behind the key (e.g. cancelled): drop it from the waiters.
    auto w = key_waiters_.find(key);
    if (w != key_waiters_.end()) {
      std::erase(w->second, id);
      if (w->second.empty()) key_waiters_.erase(w);
    }
    return;
  }
  auto w = key_waiters_.find(key);
  while (w != key_waiters_.end() && !w->second.empty()) {
    const Id next = w->second.front();
    w->second.pop_front();
    auto n = items_.find(next);
    if (n == items_.end()) continue;
    holder->second = next;
    if (w->second.empty()) key_waiters_.erase(w);
    place(next, n->second);
    return;
  }
  if (w != key_waiters_.end()) key_waiters_.erase(w);
  key_holder_.erase(holder);
}

std::optional<std::int64_t> Scheduler::next_due() const {
  // The top may be stale; it only makes the engine wake early, never late.
  if (delayed_.empty()) return std::nullopt;
  return delayed_.top().at;
}

std::size_t Scheduler::ready_count() const {
  std::size_t n = 0;
  for (const auto& q : lanes_) n += q.size();
  return n;
}

}  // namespace herald
