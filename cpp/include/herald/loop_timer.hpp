#pragma once
/// A timer on an Asio loop that follows the engine's Clock: with the system clock it is a
/// steady_timer; with a manual clock it fires when the clock is advanced past its due time, so
/// tests move time instead of sleeping. Armed, cancelled and fired on the loop's thread only.
#include <cstdint>
#include <functional>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "herald/clock.hpp"

namespace herald {

class LoopTimer {
 public:
  LoopTimer(boost::asio::io_context& io, std::shared_ptr<Clock> clock, std::function<void()> fire);
  ~LoopTimer();
  LoopTimer(const LoopTimer&) = delete;
  LoopTimer& operator=(const LoopTimer&) = delete;

  /// Fires once at `due_ms` (clock time), or earlier if it was already armed earlier.
  void arm_at(std::int64_t due_ms);
  void cancel();
  /// When it will fire; 0 when not armed.
  [[nodiscard]] std::int64_t due_ms() const noexcept { return due_ms_; }

 private:
  void fire_if_due();

  boost::asio::io_context& io_;
  std::shared_ptr<Clock> clock_;
  std::function<void()> fire_;
  boost::asio::steady_timer timer_;
  std::int64_t due_ms_ = 0;
  std::uint64_t listener_ = 0;
};

}  // namespace herald
