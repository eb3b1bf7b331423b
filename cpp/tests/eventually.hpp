#pragma once
// Waiting on observable state instead of sleeping: poll a condition until it holds or a bound
// passes. The bound is only a failure deadline; a passing test waits no longer than it must.
#include <chrono>
#include <thread>

namespace herald::testing {

/// True as soon as `ready()` holds; false when it still does not after `bound`.
template <class F>
[[nodiscard]] bool eventually(F&& ready, std::chrono::milliseconds bound = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (!ready()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // poll interval, not a wait on time
  }
  return true;
}

}  // namespace herald::testing
