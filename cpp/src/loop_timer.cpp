#include "herald/loop_timer.hpp"

#include <algorithm>
#include <chrono>

#include <boost/asio/post.hpp>

namespace herald {

LoopTimer::LoopTimer(boost::asio::io_context& io, std::shared_ptr<Clock> clock, std::function<void()> fire)
    : io_(io), clock_(std::move(clock)), fire_(std::move(fire)), timer_(io) {
  if (clock_->manual()) {
    listener_ = clock_->on_advance([this] { boost::asio::post(io_, [this] { fire_if_due(); }); });
  }
}

LoopTimer::~LoopTimer() {
  if (listener_ != 0) clock_->remove_listener(listener_);
}

void LoopTimer::arm_at(std::int64_t due_ms) {
  if (due_ms_ != 0 && due_ms_ <= due_ms) return;  // already set to fire in time
  due_ms_ = due_ms;
  if (clock_->manual()) {
    // Already due: fire from the loop, as a real timer would.
    if (clock_->now_ms() >= due_ms) boost::asio::post(io_, [this] { fire_if_due(); });
    return;
  }
  timer_.expires_after(std::chrono::milliseconds(std::max<std::int64_t>(0, due_ms - clock_->now_ms())));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // re-armed or cancelled
    due_ms_ = 0;
    fire_();
  });
}

void LoopTimer::cancel() {
  due_ms_ = 0;
  timer_.cancel();
}

void LoopTimer::fire_if_due() {
  if (due_ms_ == 0 || clock_->now_ms() < due_ms_) return;
  due_ms_ = 0;
  fire_();
}

}  // namespace herald
