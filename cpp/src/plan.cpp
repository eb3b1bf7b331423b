#include "herald/plan.hpp"

#include <array>

namespace herald {

std::string_view to_string(StepSuccess s) noexcept {
  static constexpr std::array<std::string_view, 3> names = {"accepted", "delivered", "read"};
  const auto i = static_cast<std::size_t>(s);
  return i < names.size() ? names[i] : "unknown";
}

const StepRef& unrouted_step() noexcept {
  static const PlanStep empty;
  static const StepRef none(std::shared_ptr<const PlanStep>(), &empty);  // aliasing, owning nothing
  return none;
}

bool known_channel(std::string_view channel) noexcept {
  static constexpr std::array<std::string_view, 5> channels = {"sms", "email", "push", "chat", "webhook"};
  for (std::string_view c : channels) {
    if (c == channel) return true;
  }
  return false;
}

}  // namespace herald
