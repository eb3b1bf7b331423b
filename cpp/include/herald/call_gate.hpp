#pragma once
/// Lets calls into an object while it is open, and lets its close() wait until every call that
/// got in has left, so nothing is torn down under a caller (a thread inside send() while another
/// closes). Lock-free on the way in and out: one atomic add each.
#include <atomic>
#include <cstdint>
#include <utility>

#include "herald/errors.hpp"

namespace herald {

class CallGate {
 public:
  /// Held for the length of one call.
  class Pass {
   public:
    explicit Pass(CallGate* gate) noexcept : gate_(gate) {}
    Pass(Pass&& other) noexcept : gate_(std::exchange(other.gate_, nullptr)) {}
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;
    Pass& operator=(Pass&&) = delete;
    ~Pass() {
      if (gate_ != nullptr) gate_->leave();
    }

   private:
    CallGate* gate_;
  };

  /// A pass for one call. Throws EngineClosed once close_and_wait() has begun.
  [[nodiscard]] Pass enter() {
    const std::uint64_t before = state_.fetch_add(one_call, std::memory_order_acquire);
    if ((before & closed_bit) != 0) {
      leave();
      throw EngineClosed("engine is closed");
    }
    return Pass(this);
  }

  /// Refuses new calls, then waits until the calls inside have left. Idempotent.
  void close_and_wait() {
    std::uint64_t now = state_.fetch_or(closed_bit, std::memory_order_acq_rel) | closed_bit;
    while (now != closed_bit) {
      state_.wait(now, std::memory_order_acquire);
      now = state_.load(std::memory_order_acquire);
    }
  }

  [[nodiscard]] bool closed() const noexcept { return (state_.load(std::memory_order_acquire) & closed_bit) != 0; }
  /// Calls inside now (for tests).
  [[nodiscard]] std::uint64_t inside() const noexcept { return state_.load(std::memory_order_acquire) / one_call; }

 private:
  static constexpr std::uint64_t closed_bit = 1;
  static constexpr std::uint64_t one_call = 2;

  void leave() noexcept {
    const std::uint64_t after = state_.fetch_sub(one_call, std::memory_order_acq_rel) - one_call;
    if ((after & closed_bit) != 0) state_.notify_all();
  }

  std::atomic<std::uint64_t> state_{0};  ///< calls inside × 2, plus 1 once closing
};

}  // namespace herald
