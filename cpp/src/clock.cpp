#include "herald/clock.hpp"

namespace herald {

namespace {

class SystemClock final : public Clock {
 public:
  [[nodiscard]] std::int64_t now_us() const override { return herald::now_us(); }
};

}  // namespace

std::shared_ptr<Clock> system_clock() {
  static const std::shared_ptr<Clock> clock = std::make_shared<SystemClock>();
  return clock;
}

ManualClock::ManualClock(std::int64_t start_us) : now_us_(start_us) {}

void ManualClock::advance(std::chrono::microseconds by) {
  if (by.count() <= 0) return;
  now_us_.fetch_add(by.count(), std::memory_order_acq_rel);
  std::lock_guard lock(mutex_);
  for (auto& [id, f] : listeners_) f();
}

std::uint64_t ManualClock::on_advance(std::function<void()> f) {
  std::lock_guard lock(mutex_);
  const std::uint64_t id = next_id_++;
  listeners_.emplace(id, std::move(f));
  return id;
}

void ManualClock::remove_listener(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  listeners_.erase(id);
}

}  // namespace herald
